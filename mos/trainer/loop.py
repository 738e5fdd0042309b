"""The training loop: epochs with gradient accumulation, validation scored the way `mos score`
scores, early stopping and the best checkpoint on mean validation SRCC or on the validation loss
(`select_by`), best/last checkpoints, resume, the run folder.

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
import csv
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mos.audio import window_samples
from mos.data.manifest import Item, Manifest
from mos.distribution import listener_spread
from mos.errors import MosError
from mos.metrics import compute_metrics, evaluate_levels
from mos.model import ModelConfig, MosModel, TargetSpec
from mos.model.encoders import CONV, EncoderInfo, configure, fed_unresampled, resolve_audio_encoder
from mos.model.mos_model import count_parameters
from mos.model.text_encoder import load_text_encoder
from mos.runtime.batching import pad_waveforms, plan_batches
from mos.trainer.batches import Batch, ClipDataset, make_loader
from mos.files import write_text_atomic
from mos.trainer.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from mos.trainer.config import TrainConfig
from mos.trainer.distributed import Dist, device_for, rank_seed, shard_bounds
from mos.trainer.feature_cache import (FeatureBatch, FeatureCache, FeatureDataset, default_cache_root,
                                       feature_loader)
from mos.trainer.losses import combined_loss, distribution_loss
from mos.trainer.plots import plot_curves, plot_scatter
from mos.trainer.schedule import advance, make_schedule
from mos.trainer.splits import Splits
from mos.windows import split_windows, window_mixture

SGD_MOMENTUM = 0.9
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MosError("--device cuda: PyTorch sees no CUDA device here")
    return torch.device(name)


def rng_state(train_ds: ClipDataset, loader_gen: torch.Generator) -> dict[str, Any]:
    """Every random generator a training epoch draws from, as plain data (weights_only-loadable)."""
    np_name, np_key, np_pos, np_gauss, np_cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_name, np_key.tolist(), int(np_pos), int(np_gauss), float(np_cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader_gen.get_state(),
        "dataset": train_ds.rng.bit_generator.state,
    }


def set_rng_state(state: dict[str, Any], train_ds: ClipDataset, loader_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    name, key, pos, gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), pos, gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    loader_gen.set_state(state["loader"])
    train_ds.rng.bit_generator.state = state["dataset"]


def feature_statistics(model: MosModel, ds: ClipDataset, max_clips: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin mean/std of the training log-mels (valid frames only)."""
    total = torch.zeros(model.cfg.n_mels, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    with torch.no_grad():
        for i in range(min(len(ds), max_clips)):
            wav = torch.from_numpy(ds.audio(i)).unsqueeze(0)
            feats, frames = model.frontend.log_mel(wav, torch.tensor([wav.shape[1]]))
            f = feats[0, :, : int(frames[0])].double()
            total += f.sum(1)
            total_sq += (f * f).sum(1)
            count += f.shape[1]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp(min=1e-6).sqrt()
    return mean.float().unsqueeze(1), std.float().unsqueeze(1)


def build_model_config(cfg: TrainConfig, train: Manifest, encoder: EncoderInfo | None = None,
                       note: Any = None) -> ModelConfig:
    """The model a run trains: targets from the training data (normalised by their training mean
    and std, or with --target-scale raw by mean 0 and std 1: the heads then learn the scores
    themselves); rate, window and encoder fields from the pretrained `encoder` when there is one
    (a fixed encoder window overrides --max-seconds: `note` is told). The default conv model
    runs at 16 kHz."""
    targets = []
    for t in train.targets:
        values = np.array([it.targets[t.name] for it in train.items], dtype=np.float64)
        values = values[np.isfinite(values)]  # unrated clips (NaN, `mos distill`) do not count
        mean, std = (0.0, 1.0) if cfg.target_scale == "raw" else (float(values.mean()), float(values.std()) or 1.0)
        targets.append(TargetSpec(t.name, float(t.low), float(t.high), mean, std))
    model_cfg = ModelConfig(sample_rate=16000, text_encoder=cfg.text_encoder, max_text_tokens=cfg.max_text_tokens,
                            targets=targets,
                            window_seconds=float(cfg.max_seconds), head=cfg.model_head,
                            head_layers=tuple(int(n) for n in cfg.head_layers),
                            head_activation=cfg.head_activation, dropout=cfg.dropout,
                            audio_only_targets=tuple(cfg.audio_only_targets),
                            distribution_bins=cfg.distribution_bins, distribution_width=cfg.distribution_width)
    unknown = [t for t in cfg.audio_only_targets if t not in train.target_names]
    if unknown:
        raise MosError(f"--audio-only-targets {','.join(unknown)}: {train.source} has no such target "
                       f"(its targets: {', '.join(train.target_names)})")
    if encoder is not None:
        for line in configure(model_cfg, cfg.audio_encoder, encoder, cfg.finetune_audio):
            if note is not None:
                note(line)
    return model_cfg


def param_groups(model: MosModel, cfg: TrainConfig) -> tuple[list[dict[str, Any]], list[float]]:
    """Optimiser groups: everything trainable at --lr; a fine-tuned pretrained backbone at --encoder-lr."""
    backbone: list[torch.nn.Parameter] = []
    if model.cfg.pretrained_audio and model.cfg.finetune_audio:
        backbone = [p for p in model.audio_encoder.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups, lrs = [{"params": rest, "lr": cfg.lr}], [cfg.lr]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.encoder_lr})
        lrs.append(cfg.encoder_lr)
    return groups, lrs


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum 0.9 (the MusicEval baseline's); both with cfg.weight_decay,
    each parameter group at its own rate."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=SGD_MOMENTUM, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def training_loss(pred: torch.Tensor, true: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The run's loss on normalised predictions and targets [B, n_targets] (averaged or summed
    over the targets, --loss-reduction)."""
    return combined_loss(pred, true, cfg.mse_weight, cfg.rank_weight, cfg.corr_weight, cfg.clip_tau, cfg.rank_margin,
                         cfg.loss, cfg.listnet_weight, cfg.loss_reduction)


def raw_outputs(model: MosModel, batch: Batch | FeatureBatch) -> torch.Tensor:
    """The heads' raw outputs of a training batch: from cached encoder features or from waveforms."""
    if isinstance(batch, FeatureBatch):
        frames = model.audio_encoder.mix(batch.feats)
        return model.head_outputs(frames, batch.frame_lengths, batch.text, batch.text_lengths)
    return model.outputs(batch.waveform, batch.lengths, batch.text, batch.text_lengths)


class TrainingForward(torch.nn.Module):
    """`raw_outputs` as a module's forward, for DistributedDataParallel to wrap."""

    def __init__(self, model: MosModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch | FeatureBatch) -> torch.Tensor:
        return raw_outputs(self.model, batch)


def _windows(batch: Batch, window: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Every clip of a batch cut into windows as `mos score` cuts it: (waveforms, lengths, owner)."""
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    wave = batch.waveform.cpu().numpy()
    for i, n in enumerate(batch.lengths.tolist()):
        for piece in split_windows(wave[i, :n], window):
            pieces.append(piece)
            owner.append(i)
    padded, lengths = pad_waveforms(pieces)
    return torch.from_numpy(padded), torch.from_numpy(lengths), owner


def window_scores(model: MosModel, batch: Batch | FeatureBatch, device: torch.device,
                  amp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unclamped scale-space scores of every scoring window in a batch: (scores [n, targets],
    window lengths in samples [n], the manifest position of each window's clip [n], that
    clip's normalised targets [n, targets], and the listener spread [n, targets], zeros unless
    the model predicts distributions)."""
    spread = np.zeros(0, dtype=np.float32)
    if isinstance(batch, FeatureBatch):
        b = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            raw = model.head_outputs(model.audio_encoder.mix(b.feats), b.frame_lengths, b.text, b.text_lengths)
        scores = model.to_scale(model.normalised(raw.float()), clamp=False)
        spread = model.spread(raw.float()) if model.cfg.predicts_spread else torch.zeros_like(scores)
        return (scores.cpu().numpy(), batch.samples.numpy(), batch.index.numpy(), batch.targets.numpy(),
                spread.cpu().numpy())
    window = window_samples(model.cfg.window_seconds, model.cfg.sample_rate)
    waves, lengths, owner = _windows(batch, window)
    sel = torch.tensor(owner, dtype=torch.long)
    groups = [list(range(len(owner)))]
    if not model.cfg.padding_invariant:  # such encoders see only windows of equal length together
        groups = plan_batches(lengths.tolist(), len(owner), equal_lengths=True)
    scores = np.zeros((len(owner), len(model.cfg.targets)), dtype=np.float32)
    spread = np.zeros_like(scores)
    for g in groups:
        gi = torch.tensor(g, dtype=torch.long)
        width = int(lengths[gi].max())
        text = None if batch.text is None else batch.text[sel[gi]].to(device)
        text_lengths = None if batch.text_lengths is None else batch.text_lengths[sel[gi]].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            raw = model.outputs(waves[gi, :width].to(device), lengths[gi].to(device), text, text_lengths).float()
        scores[g] = model.to_scale(model.normalised(raw), clamp=False).cpu().numpy()
        if model.cfg.predicts_spread:
            spread[g] = model.spread(raw).cpu().numpy()
    return scores, lengths.numpy(), batch.index[sel].numpy(), batch.targets[sel].numpy(), spread


def clamp_scores(model: MosModel, scores: np.ndarray) -> np.ndarray:
    """Scale-space scores [n, targets] clamped to each target's range (MosModel.clamp), float32."""
    with torch.no_grad():
        clamped = model.clamp(torch.from_numpy(np.asarray(scores, dtype=np.float32)).to(model.target_low.device))
    return clamped.cpu().numpy()


def predict_with_spread(model: MosModel, loader: Any, device: torch.device, amp: bool,
                        clamp: bool = True) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Scale-space predictions and the normalised-space MSE over a loader of whole clips (or of
    every cached window of them), in manifest order, scored as `mos score` scores: each clip cut
    into windows of the model's training window, the UNCLAMPED window scores averaged weighted by
    window length, then clamped (unless `clamp` is False); and the listener spread of each clip
    (its windows' mixture; zeros unless the model predicts distributions)."""
    model.eval()
    parts = []
    with torch.no_grad():
        for batch in loader:
            parts.append(window_scores(model, batch, device, amp))
    scores, weights, owner, targets, spreads = (np.concatenate(x) for x in zip(*parts))
    clips = np.unique(owner)
    std = model.target_std.cpu().numpy()
    mean = model.target_mean.cpu().numpy()
    combined = [window_mixture(scores[owner == i], spreads[owner == i], weights[owner == i]) for i in clips]
    pred = np.stack([m for m, _ in combined]).astype(np.float32)
    if clamp:
        pred = clamp_scores(model, pred)
    spread = np.stack([s for _, s in combined]).astype(np.float32)
    true = np.stack([targets[owner == i][0] for i in clips]) * std + mean
    loss = float(np.mean(((pred - true) / std) ** 2))
    return pred, true, loss, spread


def predict(model: MosModel, loader: Any, device: torch.device, amp: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """predict_with_spread without the spread."""
    return predict_with_spread(model, loader, device, amp)[:3]


def target_metrics(pred: np.ndarray, true: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    return {n: compute_metrics(pred[:, j], true[:, j]).as_dict() for j, n in enumerate(names)}


def level_metrics(pred: np.ndarray, true: np.ndarray, names: list[str], items: list[Item]) -> dict[str, dict[str, dict]]:
    """target -> level ("utterance", and "system" when every clip has one) -> metrics."""
    systems = [it.system for it in items]
    return {n: {k: v.as_dict() for k, v in evaluate_levels(pred[:, j], true[:, j],
                                                           systems if all(systems) else None).items()}
            for j, n in enumerate(names)}


def write_predictions(path: Path, items: list[Item], names: list[str], pred: np.ndarray, true: np.ndarray,
                      groups: dict[str, str] | None = None, folds: list[int] | None = None,
                      spread: np.ndarray | None = None) -> None:
    """`id,<target>...,true_<target>...` then `<target>_std...` for a distribution model, then
    `system`, `group`, `fold` when known (1-based folds)."""
    header = ["id", *names, *(f"true_{n}" for n in names)] + ([f"{n}_std" for n in names] if spread is not None else [])
    has_system = all(it.system for it in items)
    header += ["system"] * has_system + ["group"] * (groups is not None) + ["fold"] * (folds is not None)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i, it in enumerate(items):
            row = [it.id, *(f"{v:.4f}" for v in pred[i]), *(f"{v:.4f}" for v in true[i])]
            if spread is not None:
                row += [f"{v:.4f}" for v in spread[i]]
            if has_system:
                row.append(it.system)
            if groups is not None:
                row.append(groups[it.id])
            if folds is not None:
                row.append(folds[i] + 1)
            w.writerow(row)


def format_epoch(epoch: int | str, loss: float | None, metrics: dict[str, dict[str, float]]) -> str:
    head = f"EPOCH {epoch}: " + (f"Loss={loss:.4f}" if loss is not None else "Loss=   -  ")
    parts = [
        f"{n}: SRCC={m['srcc']:.4f} LCC={m['lcc']:.4f} KTAU={m['ktau']:.4f} MSE={m['mse']:.4f}" for n, m in metrics.items()
    ]
    return " | ".join([head, *parts])


def mean_srcc(metrics: dict[str, dict[str, float]]) -> float:
    return float(np.mean([m["srcc"] for m in metrics.values()]))


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
        self.amp = cfg.amp and self.device.type == "cuda"
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
        self.features: FeatureCache | None = None
        if model_cfg.pretrained_audio and cfg.caches_features:
            self.model.to(self.device)
            root = Path(cfg.feature_cache) if cfg.feature_cache else default_cache_root()
            self.features = FeatureCache(root, self.model.audio_encoder, max_samples, self.device, cfg.batch_size)
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
        groups, lrs = param_groups(self.model, cfg)
        self.optimizer = build_optimizer(groups, cfg)
        self.steps_per_epoch = math.ceil(len(self.train_loader) / cfg.accumulate)
        self.steps = 0  # optimiser steps taken so far
        self.start_epoch = 1
        self.best_srcc = -float("inf")  # mean validation SRCC of the best epoch
        self.best_score = -float("inf")  # what select_by compares: that SRCC, or minus the validation loss
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        if resume_ckpt is not None:
            self._restore(resume_ckpt, last)
        elif cfg.resume:
            console.print(f"resume: {last} does not exist yet (killed before the first epoch ended); starting at epoch 1", markup=False)
        self.scheduler = make_schedule(cfg.schedule, self.optimizer, lrs if len(lrs) > 1 else cfg.lr,
                                       cfg.epochs * self.steps_per_epoch, self.steps)
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
                    raw = self.ddp(batch) if self.ddp is not None else raw_outputs(self.model, batch)
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
