"""The training loop (`Trainer`): epochs with gradient accumulation, validation each epoch, early
stopping and the best checkpoint on mean validation SRCC or on the validation loss (`select_by`),
best/last checkpoints, resume, and what the run writes into its folder as it goes.

Its parts live beside it: the model and optimiser it builds (mos.trainer.model_setup), seeds and
random generator states (mos.trainer.state), validation scored the way `mos score` scores and
its metrics (mos.trainer.validation), the losses (mos.trainer.losses) and the run folder's
checks and predictions CSV (mos.trainer.run_folder).

The validation loss is the training loss (the same weighted losses on normalised targets)
computed once over the whole validation set, from the clip scores `mos score` would give (or,
with `val_loss_clamp` off, from those scores before they are clamped to the targets' ranges).

Crash safety: an epoch is committed by writing `last.pt` atomically (weights, optimiser, step
count, history, every random generator's state). Only then is `best.pt` copied from it (when the
epoch is the best so far) and the epoch's line appended to `metrics.jsonl`. On resume `last.pt`
is the truth: a `best.pt` that lags behind it is copied again and `metrics.jsonl` is rewritten
from its history. So a kill at any point resumes to the same weights an uninterrupted run
reaches (the random generators continue where the committed epoch left them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mos.audio import window_samples
from mos.data.manifest import Manifest
from mos.distribution import listener_spread
from mos.errors import MosError
from mos.files import write_text_atomic
from mos.heads import KERNEL_HEADS
from mos.model import ModelConfig, MosModel
from mos.model.encoders import CONV, fed_unresampled, resolve_audio_encoder
from mos.model.mos_model import count_parameters
from mos.model.text_encoder import load_text_encoder
from mos.trainer.batches import Batch, ClipDataset, make_loader
from mos.trainer.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from mos.trainer.config import TrainConfig
from mos.trainer.distributed import Dist, device_for, rank_seed, shard_bounds
from mos.trainer.feature_cache import (FeatureBatch, FeatureCache, FeatureDataset, StackFeatureCache,
                                       default_cache_root, feature_loader, make_feature_cache)
from mos.trainer.kernel_fit import fit_kernel_run
from mos.trainer.losses import distribution_loss, training_loss
from mos.trainer.model_setup import build_model_config, build_optimizer, feature_statistics, param_groups
from mos.trainer.plots import plot_curves, plot_scatter
from mos.trainer.run_folder import write_predictions
from mos.trainer.schedule import advance, make_schedule
from mos.trainer.splits import Splits
from mos.trainer.state import pick_device, rng_state, seed_everything, set_rng_state
from mos.trainer.validation import (clamp_scores, format_epoch, level_metrics, mean_srcc, predict_with_spread,
                                   target_metrics)

EARLY_STOPPING = "early stopping"
EPOCH_BUDGET = "epoch budget"


@dataclass
class RunResult:
    run_dir: Path
    best_epoch: int
    best_srcc: float
    untrained: dict[str, dict[str, float]]
    best: dict[str, dict[str, float]]
    stopped: str = EPOCH_BUDGET  # what ended training: EARLY_STOPPING or EPOCH_BUDGET


def batch_frames(model: MosModel, batch: Batch | FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The audio encoder's frames [B, T, D] and frame lengths of a training batch: from cached
    encoder features or from waveforms."""
    if isinstance(batch, FeatureBatch):
        return model.audio_encoder.mix(batch.feats), batch.frame_lengths
    return model.encode_audio(batch.waveform, batch.lengths)


def raw_outputs(model: MosModel, batch: Batch | FeatureBatch) -> torch.Tensor:
    """The heads' raw outputs of a training batch."""
    frames, frame_lengths = batch_frames(model, batch)
    return model.head_outputs(frames, frame_lengths, batch.text, batch.text_lengths)


class TrainingForward(torch.nn.Module):
    """`raw_outputs` as a module's forward, for DistributedDataParallel to wrap."""

    def __init__(self, model: MosModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch | FeatureBatch) -> torch.Tensor:
        return raw_outputs(self.model, batch)


class Trainer:
    """One run: built from a TrainConfig and the chosen splits; `fit()` trains and returns a RunResult.

    `run_dir` defaults to <runs_dir>/<name>; `sources` (e.g. {"data_dir": ...}) go into config.json.
    Hooks for `mos distill`: `model_overrides` (ModelConfig fields, e.g. channels) apply to a new
    model, `checkpoint_extra` is saved in every checkpoint, and `batch_loss` may be overridden.

    With `dist` (one of several DDP processes, mos.trainer.distributed): each rank trains on its
    chunk of every global batch and computes the losses on the gathered global batch, validation
    is sharded and gathered, and rank 0 alone writes the run folder.
    """

    def __init__(self, cfg: TrainConfig, splits: Splits, console: Console, run_dir: Path | None = None,
                 sources: dict[str, Any] | None = None, model_overrides: dict[str, Any] | None = None,
                 checkpoint_extra: dict[str, Any] | None = None, dist: Dist | None = None) -> None:
        self.cfg = cfg
        self.dist = dist
        self.is_main = dist is None or dist.is_main
        self.splits = splits
        self.console = console
        self.sources = sources or {}
        self.checkpoint_extra = checkpoint_extra or {}
        self.run_dir = run_dir or Path(cfg.runs_dir) / cfg.name
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = device_for(cfg.device) if dist is not None else pick_device(cfg.device)
        # A fitted head (svr, ridge) computes its kernel in float32: no bf16 autocast around it.
        self.amp = cfg.amp and self.device.type == "cuda" and cfg.model_head not in KERNEL_HEADS
        seed_everything(cfg.seed)

        resume_ckpt = None
        last = self.ckpt_dir / "last.pt"
        if cfg.resume and last.is_file():
            resume_ckpt = load_checkpoint(last)
            model_cfg = ModelConfig.from_dict(resume_ckpt["model_config"])
        else:
            encoder = None if cfg.audio_encoder == CONV else resolve_audio_encoder(cfg.audio_encoder)
            if encoder is not None and cfg.encoder_input_rate is not None:
                encoder = fed_unresampled(encoder, cfg.encoder_input_rate)
            model_cfg = build_model_config(cfg, splits.train, encoder, lambda m: console.print(m, markup=False))
            for key, value in (model_overrides or {}).items():
                setattr(model_cfg, key, tuple(value) if isinstance(value, list) else value)
        if dist is not None and model_cfg.head in KERNEL_HEADS:
            raise MosError(f"--head {model_cfg.head}: fitted once in one process; run it without --nproc or torchrun")
        if model_cfg.target_names != splits.train.target_names:
            raise MosError(f"{self.run_dir}: checkpoint targets {model_cfg.target_names} differ from the data's")
        self.text_encoder = load_text_encoder(model_cfg.text_encoder, model_cfg.max_text_tokens,
                                              expected_sha256=model_cfg.text_encoder_sha256)
        if self.text_encoder is not None:
            model_cfg.text_dim = self.text_encoder.dim
            model_cfg.text_encoder_sha256 = self.text_encoder.sha256
        self.model = MosModel(model_cfg)
        if model_cfg.pretrained_audio:
            info = self.model.audio_encoder.info
            state = "fine-tuned at --encoder-lr" if model_cfg.finetune_audio else "frozen"
            size = sum(p.numel() for p in self.model.audio_encoder.backbone.parameters())
            console.print(f"audio encoder: {info.name} ({size:,} parameters, {state}), "
                          f"{info.sample_rate} Hz", markup=False)
        names = model_cfg.target_names
        mean = np.array([t.mean for t in model_cfg.targets], dtype=np.float32)
        std = np.array([t.std for t in model_cfg.targets], dtype=np.float32)
        captions = None
        if self.text_encoder is not None:
            all_items = splits.train.items + splits.validation.items
            missing = next((it for it in all_items if not it.caption), None)
            if missing is not None:
                raise MosError(f"{splits.train.source}: clip {missing.id} has no caption (use --text-encoder none for audio-only)")
            distinct = sorted({it.caption for it in all_items if it.caption})
            t0 = time.perf_counter()
            captions = dict(zip(distinct, self.text_encoder.encode(distinct)))
            console.print(f"text: {len(distinct)} distinct captions encoded once with {self.text_encoder.name} "
                          f"in {time.perf_counter() - t0:.1f} s", markup=False)
        self._captions = captions
        self._target_stats = (names, mean, std)
        self.distribution_targets = self._distribution_targets(splits.train) if model_cfg.predicts_spread else None
        max_samples = window_samples(model_cfg.window_seconds, model_cfg.sample_rate)
        self.cache_mb = cfg.cache_limit_mb if cfg.cache_audio else 0
        self.loader_gen = torch.Generator().manual_seed(cfg.seed)
        drop_last = len(splits.train.items) > cfg.batch_size
        shard = None
        if dist is not None:
            if min(cfg.batch_size, len(splits.train.items)) < dist.world:
                raise MosError(f"--batch-size {cfg.batch_size} is the global batch of {dist.world} processes: "
                               f"it (and the {len(splits.train.items)} training clips) must give each at least one clip")
            shard = (dist.rank, dist.world)
        self.features: FeatureCache | StackFeatureCache | None = None
        if model_cfg.pretrained_audio and cfg.caches_features:
            self.model.to(self.device)
            root = Path(cfg.feature_cache) if cfg.feature_cache else default_cache_root()
            self.features = make_feature_cache(root, self.model.audio_encoder, max_samples, self.device, cfg.batch_size)
            with dist.main_first() if dist is not None else contextlib.nullcontext():  # rank 0 writes the cache
                self.features.prepare(splits.train.items + splits.validation.items,
                                      lambda m: console.print(m, markup=False))
            self.train_ds: ClipDataset | FeatureDataset = FeatureDataset(
                splits.train.items, self.features, self._normalised(splits.train), captions, seed=cfg.seed)
            self.train_loader = feature_loader(self.train_ds, cfg.batch_size, True, self.loader_gen, drop_last, shard)
        else:
            self.train_ds = ClipDataset(splits.train, model_cfg.sample_rate, names, mean, std, captions,
                                        max_samples, random_crop=True, seed=cfg.seed, cache_limit_mb=self.cache_mb,
                                        gain_db=cfg.gain_db)
            self.train_loader = make_loader(self.train_ds, cfg.batch_size, True, cfg.num_workers, self.loader_gen,
                                            drop_last=drop_last, shard=shard)
        self.val_loader = self.eval_loader(self._val_shard(splits.validation))
        if resume_ckpt is None and self.model.frontend is not None:
            fm, fs = feature_statistics(self.model, self.train_ds)
            self.model.frontend.feat_mean.copy_(fm)
            self.model.frontend.feat_std.copy_(fs)
        if dist is not None and not dist.is_main:  # the same weights, but each rank its own dropout, crops, gains
            seed_everything(rank_seed(cfg.seed, dist.rank))
            self.train_ds.reseed(rank_seed(cfg.seed, dist.rank))
        self.model.to(self.device)
        self.fitted_head = model_cfg.head in KERNEL_HEADS  # fitted once by mos.trainer.kernel_fit: no optimiser
        groups, lrs = param_groups(self.model, cfg)
        self.optimizer = None if self.fitted_head else build_optimizer(groups, cfg)
        self.steps_per_epoch = math.ceil(len(self.train_loader) / cfg.accumulate)
        self.steps = 0  # optimiser steps taken so far
        self.start_epoch = 1
        self.best_srcc = -float("inf")  # mean validation SRCC of the best epoch
        self.best_score = -float("inf")  # what select_by compares: that SRCC, or minus the validation loss
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        if resume_ckpt is not None and self.fitted_head:
            console.print(f"resume: --head {model_cfg.head} is fitted once, not trained in epochs: fitting it again "
                          "(the same data gives the same fit)", markup=False)
        elif resume_ckpt is not None:
            self._restore(resume_ckpt, last)
        elif cfg.resume:
            console.print(f"resume: {last} does not exist yet (killed before the first epoch ended); starting at epoch 1", markup=False)
        self.scheduler = None if self.optimizer is None else make_schedule(
            cfg.schedule, self.optimizer, lrs if len(lrs) > 1 else cfg.lr, cfg.epochs * self.steps_per_epoch, self.steps)
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None
        if dist is not None:  # wraps the same module: rank 0's weights are broadcast here
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                TrainingForward(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False)
            per_rank = sorted({len(c) for c in np.array_split(np.arange(cfg.batch_size), dist.world)})
            console.print(f"DDP: {dist.world} processes ({dist.backend}); global batch {cfg.batch_size} clips "
                          f"({' or '.join(map(str, per_rank))} per process)"
                          + (f" x {cfg.accumulate} accumulated = {cfg.batch_size * cfg.accumulate} per optimiser step"
                             if cfg.accumulate > 1 else " per optimiser step"), markup=False)

    def _val_shard(self, manifest: Manifest) -> Manifest:
        """This rank's contiguous share of the validation clips (all of them in one process)."""
        if self.dist is None:
            return manifest
        start, stop = shard_bounds(len(manifest.items), self.dist.rank, self.dist.world)
        return dataclasses.replace(manifest, items=manifest.items[start:stop])

    def _predict_validation(self, clamp: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scale-space predictions (clamped unless `clamp` is False), targets and spreads of the
        whole validation set: with several processes each rank scores its share and the shares
        are gathered, in manifest order."""
        local = None
        if len(self.val_loader.dataset):
            pred, true, _, spread = predict_with_spread(self.model, self.val_loader, self.device, self.amp, clamp)
            local = (pred, true, spread)
        if self.dist is None:
            assert local is not None
            return local
        parts = [p for p in self.dist.gather_objects(local) if p is not None]
        pred, true, spread = (np.concatenate(x) for x in zip(*parts))
        return pred, true, spread

    def _distribution_targets(self, manifest: Manifest) -> torch.Tensor:
        """[clips, targets, bins]: each clip's smoothed listener ratings, or for a clip with only a
        mean, a distribution around it with the pooled listener spread of the clips that have
        ratings (mos.distribution.Grid.target)."""
        cfg = self.model.cfg
        out = np.zeros((len(manifest.items), len(cfg.targets), cfg.distribution_bins), dtype=np.float32)
        notes = []
        for j, t in enumerate(cfg.targets):
            grid = cfg.grid(t)
            rated = [it.ratings.get(t.name, ()) for it in manifest.items]
            spread = listener_spread(rated)
            for i, it in enumerate(manifest.items):
                out[i, j] = grid.target(rated[i], it.targets[t.name], spread)
            with_ratings = sum(1 for r in rated if len(r))
            notes.append(f"{t.name}: {with_ratings} clips from listener ratings, {len(rated) - with_ratings} from "
                         f"their mean with listener spread {spread:.3g}")
        self.console.print(f"distribution: {cfg.distribution_bins} bins per target, {cfg.distribution_kernel} "
                           f"smoothing {', '.join(f'{cfg.smoothing_width(t):.3g}' for t in cfg.targets)}; "
                           + "; ".join(notes), markup=False)
        return torch.from_numpy(out)

    def _normalised(self, manifest: Manifest) -> np.ndarray:
        names, mean, std = self._target_stats
        raw = np.array([[it.targets[n] for n in names] for it in manifest.items], dtype=np.float32)
        return (raw - mean) / std

    def eval_loader(self, manifest: Manifest) -> Any:
        """Whole clips (no crop, no augmentation), in manifest order; with cached encoder
        features, every window of every clip."""
        if self.features is not None:
            self.features.prepare(manifest.items)
            ds = FeatureDataset(manifest.items, self.features, self._normalised(manifest), self._captions,
                                every_window=True)
            return feature_loader(ds, self.cfg.batch_size, False)
        names, mean, std = self._target_stats
        ds = ClipDataset(manifest, self.model.cfg.sample_rate, names, mean, std, self._captions, None,
                         cache_limit_mb=self.cache_mb)
        return make_loader(ds, self.cfg.batch_size, False, self.cfg.num_workers)

    def _restore(self, ckpt: dict[str, Any], last: Path) -> None:
        self.model.load_checkpoint_state(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        st = ckpt["trainer_state"]
        self.start_epoch = st["epoch"] + 1
        self.best_srcc, self.best_epoch, self.bad_epochs = st["best_srcc"], st["best_epoch"], st["bad_epochs"]
        self.best_score = st.get("best_score", self.best_srcc)  # runs saved before select_by chose by SRCC
        self.history = st["history"]
        if "rng" in st:
            self.steps = st["optimizer_steps"]
            ranks = st.get("rng_ranks") or [st["rng"]]
            if self.dist is None or len(ranks) == self.dist.world:
                set_rng_state(ranks[0 if self.dist is None else self.dist.rank], self.train_ds, self.loader_gen)
            else:  # another number of processes: the shared order continues, each rank's own streams anew
                set_rng_state(ranks[0], self.train_ds, self.loader_gen)
                if not self.is_main:
                    seed_everything(rank_seed(self.cfg.seed + self.start_epoch, self.dist.rank))
                    self.train_ds.reseed(rank_seed(self.cfg.seed + self.start_epoch, self.dist.rank))
        else:  # a run saved before step counts and all generator states were recorded
            self.steps = int(ckpt.get("scheduler", {}).get("last_epoch", 0))
            torch.set_rng_state(st["torch_rng"])
            self.loader_gen.set_state(st["loader_rng"])
        best = self.ckpt_dir / "best.pt"
        on_disk = load_checkpoint(best).get("epoch") if best.is_file() else None
        if on_disk != self.best_epoch:
            if self.best_epoch != st["epoch"]:
                raise MosError(f"{best}: holds epoch {on_disk}, but {last} records epoch {self.best_epoch} as the best")
            if self.is_main:
                copy_checkpoint(last, best)  # killed after last.pt, before best.pt: last.pt holds the best weights

    # -- one epoch ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int, progress: Progress | None = None) -> tuple[float, float]:
        """Train one epoch; returns (mean training loss, learning rate of its last step)."""
        cfg = self.cfg
        self.model.train()
        if cfg.encoder_mode == "eval" and self.model.cfg.pretrained_audio:
            self.model.audio_encoder.backbone.eval()  # as at inference: no dropout in the fine-tuned encoder
        task = progress.add_task(f"epoch {epoch}", total=len(self.train_loader)) if progress else None
        total, n = 0.0, 0
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(self.train_loader, start=1):
            batch = batch.to(self.device)
            sync = step % cfg.accumulate == 0 or step == len(self.train_loader)
            with self.ddp.no_sync() if self.ddp is not None and not sync else contextlib.nullcontext():
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    raw = self.ddp(batch) if self.ddp is not None else self.forward_batch(batch)
                if self.dist is not None:  # the loss of the global batch, as one process computes it
                    raw, batch = self.dist.global_batch(raw, batch)
                loss = self.batch_loss(self.model.normalised(raw.float()), batch)
                if self.distribution_targets is not None:
                    target = self.distribution_targets[batch.index.cpu()].to(self.device)
                    loss = loss + cfg.distribution_weight * distribution_loss(raw, target, cfg.loss_reduction)
                # Each rank's gradient covers its own rows; DDP averages over ranks, so x world
                # makes the sum: the gradient of the global batch's loss.
                world = self.dist.world if self.dist is not None else 1
                (loss * world / cfg.accumulate).backward()
            if sync:
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.steps += 1
                advance(self.scheduler)
            total += loss.item() * len(batch.index)
            n += len(batch.index)
            if progress is not None and task is not None:
                progress.update(task, advance=1, description=f"epoch {epoch} loss {total / n:.4f}")
        if progress is not None and task is not None:
            progress.remove_task(task)
        return total / max(n, 1), lr

    def forward_batch(self, batch: Batch | FeatureBatch) -> torch.Tensor:
        """The heads' raw outputs of a training batch (one process; `mos distill` also keeps the
        pooled embedding for its loss)."""
        return raw_outputs(self.model, batch)

    def batch_loss(self, out: torch.Tensor, batch: Batch | FeatureBatch) -> torch.Tensor:
        """The training loss of one batch's normalised predictions [B, n_targets]."""
        return training_loss(out, batch.targets, self.cfg)

    def validate(self) -> tuple[dict[str, dict[str, float]], float, np.ndarray, np.ndarray]:
        """Validation metrics per target (of the clamped clip scores), the validation loss (of the
        clamped or, with val_loss_clamp off, the unclamped ones), and the clamped scale-space
        predictions and targets."""
        unclamped, true, _ = self._predict_validation(clamp=False)
        pred = clamp_scores(self.model, unclamped)
        vloss = self.validation_loss(pred if self.cfg.val_loss_clamp else unclamped, true)
        val = target_metrics(pred, true, self.model.cfg.target_names)
        if self.dist is not None:  # every rank takes rank 0's numbers, so the same early-stopping decisions
            val, vloss = self.dist.broadcast((val, vloss))
        return val, vloss, pred, true

    def validation_loss(self, pred: np.ndarray, true: np.ndarray) -> float:
        """The training loss over the whole validation set at once, on the normalised clip scores `pred`."""
        mean = self.model.target_mean.cpu().numpy()
        std = self.model.target_std.cpu().numpy()
        with torch.no_grad():
            loss = training_loss(torch.from_numpy(((pred - mean) / std).astype(np.float32)),
                                 torch.from_numpy(((true - mean) / std).astype(np.float32)), self.cfg)
        return float(loss)

    def selection_score(self, val: dict[str, dict[str, float]], val_loss: float) -> float:
        """What select_by compares between epochs, higher is better."""
        return -val_loss if self.cfg.select_by == "loss" else mean_srcc(val)

    def describe_score(self, score: float) -> str:
        return f"validation loss {-score:.4f}" if self.cfg.select_by == "loss" else f"mean SRCC {score:.4f}"

    def criterion(self) -> str:
        return "lower validation loss" if self.cfg.select_by == "loss" else "better mean validation SRCC"

    def _state(self, epoch: int, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What last.pt records; `rngs`: every rank's generator states (several processes)."""
        return {
            "train_config": self.cfg.to_dict(),
            "data": self.splits.description,
            **self.checkpoint_extra,
            "optimizer": self.optimizer.state_dict(),
            "trainer_state": {
                "epoch": epoch, "best_srcc": self.best_srcc, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": self.history, "optimizer_steps": self.steps,
                "rng": rngs[0] if rngs else rng_state(self.train_ds, self.loader_gen),
                **({"rng_ranks": rngs} if rngs else {}),
            },
        }

    def _commit(self, epoch: int, entry: dict[str, Any], improved: bool) -> None:
        """last.pt first (the commit point), then best.pt from it, then the metrics line. With
        several processes every rank calls this (their generator states are gathered); rank 0 writes."""
        rngs = None
        if self.dist is not None:
            rngs = self.dist.gather_objects(rng_state(self.train_ds, self.loader_gen))
        if not self.is_main:
            return
        last = self.ckpt_dir / "last.pt"
        save_checkpoint(last, self.model, {**self._state(epoch, rngs), "validation_metrics": entry["val"], "epoch": epoch})
        if improved:
            copy_checkpoint(last, self.ckpt_dir / "best.pt")
        self._append_metrics(entry)

    def _append_metrics(self, entry: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _write_config(self) -> None:
        if not self.is_main:
            return
        write_text_atomic(self.run_dir / "config.json", json.dumps(
            {"train": self.cfg.to_dict(), "model": self.model.cfg.to_dict(), "data": self.splits.description,
             **self.sources}, indent=2))

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> RunResult:
        if self.fitted_head:
            return fit_kernel_run(self)
        cfg, console = self.cfg, self.console
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        console.print(f"data: {self.splits.description}", markup=False)
        console.print(f"model: {count_parameters(self.model):,} trainable parameters; targets "
                      + ", ".join(f"{t.name} [{t.low:g}, {t.high:g}]" for t in self.model.cfg.targets)
                      + f"; {self.model.cfg.window_seconds:g} s training window; device {self.device}", markup=False)
        metrics_log = self.run_dir / "metrics.jsonl"
        if not self.history:
            if self.is_main:
                metrics_log.write_text("")
            untrained, vloss, _, _ = self.validate()
            self.history.append({"epoch": 0, "train_loss": None, "val_loss": vloss, "val": untrained})
            self._append_metrics(self.history[-1])
            console.print(format_epoch("0 (untrained)", None, untrained), markup=False)
        else:
            if self.is_main:
                write_text_atomic(metrics_log, "".join(json.dumps(h) + "\n" for h in self.history))
            console.print(f"resuming {self.run_dir} at epoch {self.start_epoch} (best so far: epoch {self.best_epoch}, "
                          f"{self.describe_score(self.best_score)})", markup=False)
        untrained = self.history[0]["val"]
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True, disable=not self.is_main)
        stopped = EPOCH_BUDGET
        with progress:
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                if self.bad_epochs >= cfg.patience:
                    stopped = EARLY_STOPPING
                    break
                t0 = time.perf_counter()
                train_loss, lr = self.train_epoch(epoch, progress)
                val, vloss, _, _ = self.validate()
                entry = {"epoch": epoch, "train_loss": train_loss, "val_loss": vloss, "val": val,
                         "lr": lr, "steps": self.steps, "seconds": round(time.perf_counter() - t0, 2)}
                self.history.append(entry)
                console.print(format_epoch(epoch, train_loss, val), markup=False)
                score = self.selection_score(val, vloss)
                improved = score > self.best_score
                if improved:
                    self.best_score, self.best_srcc, self.best_epoch, self.bad_epochs = score, mean_srcc(val), epoch, 0
                else:
                    self.bad_epochs += 1
                self._commit(epoch, entry, improved)
                if improved:
                    console.print(f"BEST SAVED ({self.describe_score(score)}) -> {self.ckpt_dir / 'best.pt'}", markup=False)
                else:
                    console.print(f"Patience: {self.bad_epochs}/{cfg.patience}", markup=False)
                console.print("-" * 40, markup=False)
        last_epoch = self.history[-1]["epoch"]
        if last_epoch < self.start_epoch:  # a resume that trained nothing: say why
            why = (f"it had already stopped early (no {self.criterion()} in {cfg.patience} epochs; "
                   "--patience to continue)" if stopped == EARLY_STOPPING
                   else f"it already has {last_epoch} epochs (--epochs more than that to train longer)")
            console.print(f"NOTHING TO TRAIN: {why}", markup=False)
        elif stopped == EARLY_STOPPING:
            console.print(f"EARLY STOPPING: no {self.criterion()} in {cfg.patience} epochs "
                          f"(stopped after epoch {last_epoch} of {cfg.epochs})", markup=False)
        else:
            console.print(f"EPOCH BUDGET REACHED: all {cfg.epochs} epochs trained (--epochs to train longer)", markup=False)
        return self._finish(untrained, stopped)

    def _finish(self, untrained: dict[str, dict[str, float]], stopped: str) -> RunResult:
        best_path = self.ckpt_dir / "best.pt"
        if self.dist is not None:
            self.dist.barrier()  # rank 0 has written best.pt
        if not best_path.is_file():
            raise MosError(f"{self.run_dir}: training produced no checkpoint")
        best = load_checkpoint(best_path)
        self.model.load_checkpoint_state(best["state_dict"])
        pred, true, spread = self._predict_validation()
        names = self.model.cfg.target_names
        items = self.splits.validation.items
        if not self.is_main:
            return RunResult(self.run_dir, self.best_epoch, self.best_srcc, untrained, best["validation_metrics"], stopped)
        write_predictions(self.run_dir / "val_predictions.csv", items, names, pred, true, self.splits.groups,
                          spread=spread if self.model.cfg.predicts_spread else None)
        levels = level_metrics(pred, true, names, items)
        (self.run_dir / "best_metrics.json").write_text(json.dumps(
            {"epoch": self.best_epoch, "stopped": stopped, "selected_by": self.cfg.select_by,
             "val_loss": next((h["val_loss"] for h in self.history if h["epoch"] == self.best_epoch), None),
             "validation": self.splits.description, "levels": levels},
            indent=2))
        plot_curves(self.history, names, self.run_dir / "curves.png")
        plot_scatter(pred, true, names, [(t.low, t.high) for t in self.model.cfg.targets], self.run_dir / "scatter.png")
        chosen = f"; chosen by {self.describe_score(self.best_score)}" if self.cfg.select_by == "loss" else ""
        self.console.print(f"best epoch {self.best_epoch}: mean validation SRCC {self.best_srcc:.4f} "
                           f"(untrained {mean_srcc(untrained):.4f}){chosen}", markup=False)
        for n in names:
            for level, m in levels[n].items():
                self.console.print(f"  {n} [{level.upper()}] MSE={m['mse']:.4f} LCC={m['lcc']:.4f} "
                                   f"SRCC={m['srcc']:.4f} KTAU={m['ktau']:.4f}", markup=False)
        return RunResult(self.run_dir, self.best_epoch, self.best_srcc, untrained, best["validation_metrics"], stopped)

    def predict_manifest(self, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
        """Scale-space predictions of the current weights on `manifest` (scored as `mos score` does)."""
        return self.predict_with_spread(manifest)[:2]

    def predict_with_spread(self, manifest: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """predict_manifest, and the listener spread of each clip (None unless the model predicts it)."""
        pred, true, _, spread = predict_with_spread(self.model, self.eval_loader(manifest), self.device, self.amp)
        return pred, true, (spread if self.model.cfg.predicts_spread else None)
