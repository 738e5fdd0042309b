"""The training loop: epochs with gradient accumulation, validation metrics per target, early
stopping on mean validation SRCC, best/last checkpoints, resume, and the run folder."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.utils.data import DataLoader

from mos.data.manifest import Manifest
from mos.errors import MosError
from mos.metrics import compute_metrics, evaluate_levels
from mos.model import ModelConfig, MosModel, TargetSpec
from mos.model.mos_model import count_parameters
from mos.model.text_encoder import load_text_encoder
from mos.trainer.batches import Batch, ClipDataset, collate
from mos.trainer.checkpoint import load_checkpoint, save_checkpoint
from mos.trainer.config import TrainConfig
from mos.trainer.losses import combined_loss
from mos.trainer.plots import plot_curves, plot_scatter
from mos.trainer.splits import Splits


@dataclass
class RunResult:
    run_dir: Path
    best_epoch: int
    best_srcc: float
    untrained: dict[str, dict[str, float]]
    best: dict[str, dict[str, float]]


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


def build_model_config(cfg: TrainConfig, train: Manifest, sample_rate: int = 16000) -> ModelConfig:
    targets = []
    for t in train.targets:
        values = np.array([it.targets[t.name] for it in train.items], dtype=np.float64)
        std = float(values.std()) or 1.0
        targets.append(TargetSpec(t.name, float(t.low), float(t.high), float(values.mean()), std))
    return ModelConfig(sample_rate=sample_rate, text_encoder=cfg.text_encoder, targets=targets)


def predict(model: MosModel, loader: DataLoader, device: torch.device, amp: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale-space predictions and normalised-space loss over a loader (in manifest order)."""
    model.eval()
    preds, trues, idxs, losses = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(batch.waveform, batch.lengths, batch.text, batch.text_lengths)
            out = out.float()
            losses.append(float(torch.nn.functional.mse_loss(out, batch.targets)) * len(batch.index))
            preds.append(model.to_scale(out).cpu().numpy())
            trues.append((batch.targets * model.target_std + model.target_mean).cpu().numpy())
            idxs.append(batch.index.cpu().numpy())
    order = np.argsort(np.concatenate(idxs))
    pred = np.concatenate(preds)[order]
    true = np.concatenate(trues)[order]
    return pred, true, sum(losses) / len(order)


def target_metrics(pred: np.ndarray, true: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    return {n: compute_metrics(pred[:, j], true[:, j]).as_dict() for j, n in enumerate(names)}


def format_epoch(epoch: int | str, loss: float | None, metrics: dict[str, dict[str, float]]) -> str:
    head = f"EPOCH {epoch}: " + (f"Loss={loss:.4f}" if loss is not None else "Loss=   -  ")
    parts = [
        f"{n}: SRCC={m['srcc']:.4f} LCC={m['lcc']:.4f} KTAU={m['ktau']:.4f} MSE={m['mse']:.4f}" for n, m in metrics.items()
    ]
    return " | ".join([head, *parts])


def mean_srcc(metrics: dict[str, dict[str, float]]) -> float:
    return float(np.mean([m["srcc"] for m in metrics.values()]))


class Trainer:
    """One run: built from a TrainConfig and the chosen splits; `fit()` trains and returns a RunResult."""

    def __init__(self, cfg: TrainConfig, splits: Splits, console: Console) -> None:
        self.cfg = cfg
        self.splits = splits
        self.console = console
        self.run_dir = Path(cfg.runs_dir) / cfg.name
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = pick_device(cfg.device)
        self.amp = cfg.amp and self.device.type == "cuda"
        seed_everything(cfg.seed)

        resume_ckpt = None
        if cfg.resume:
            last = self.ckpt_dir / "last.pt"
            if not last.is_file():
                raise MosError(f"{last}: nothing to resume (no last checkpoint in this run folder)")
            resume_ckpt = load_checkpoint(last)
            model_cfg = ModelConfig.from_dict(resume_ckpt["model_config"])
        else:
            model_cfg = build_model_config(cfg, splits.train)
        if model_cfg.target_names != splits.train.target_names:
            raise MosError(f"{self.run_dir}: checkpoint targets {model_cfg.target_names} differ from the data's")
        self.text_encoder = load_text_encoder(model_cfg.text_encoder, model_cfg.max_text_tokens)
        if self.text_encoder is not None:
            model_cfg.text_dim = self.text_encoder.dim
        self.model = MosModel(model_cfg)
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
                          f"in {time.perf_counter() - t0:.1f} s")
        max_samples = int(cfg.max_seconds * model_cfg.sample_rate) if cfg.max_seconds > 0 else None
        cache = cfg.cache_limit_mb if cfg.cache_audio else 0
        self.train_ds = ClipDataset(splits.train, model_cfg.sample_rate, names, mean, std, captions,
                                    max_samples, random_crop=True, seed=cfg.seed, cache_limit_mb=cache,
                                    gain_db=cfg.gain_db)
        self.val_ds = ClipDataset(splits.validation, model_cfg.sample_rate, names, mean, std, captions,
                                  max_samples, random_crop=False, cache_limit_mb=cache)
        gen = torch.Generator().manual_seed(cfg.seed)
        self.train_loader = DataLoader(self.train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate,
                                       num_workers=cfg.num_workers, generator=gen, drop_last=len(self.train_ds) > cfg.batch_size)
        self.val_loader = DataLoader(self.val_ds, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate,
                                     num_workers=cfg.num_workers)
        if resume_ckpt is None:
            fm, fs = feature_statistics(self.model, self.train_ds)
            self.model.frontend.feat_mean.copy_(fm)
            self.model.frontend.feat_std.copy_(fs)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = max(1, cfg.epochs * max(1, len(self.train_loader) // cfg.accumulate))
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
        self.start_epoch = 1
        self.best_srcc = -float("inf")
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        if resume_ckpt is not None:
            self.model.load_state_dict(resume_ckpt["state_dict"])
            self.optimizer.load_state_dict(resume_ckpt["optimizer"])
            self.scheduler.load_state_dict(resume_ckpt["scheduler"])
            st = resume_ckpt["trainer_state"]
            self.start_epoch = st["epoch"] + 1
            self.best_srcc, self.best_epoch, self.bad_epochs = st["best_srcc"], st["best_epoch"], st["bad_epochs"]
            self.history = st["history"]
            torch.set_rng_state(st["torch_rng"])
            gen.set_state(st["loader_rng"])
            self.train_ds.rng = np.random.default_rng([cfg.seed, self.start_epoch])

    # -- one epoch ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int, progress: Progress) -> float:
        cfg = self.cfg
        self.model.train()
        task = progress.add_task(f"epoch {epoch}", total=len(self.train_loader))
        total, n = 0.0, 0
        self.optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(self.train_loader, start=1):
            batch: Batch = batch.to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                out = self.model(batch.waveform, batch.lengths, batch.text, batch.text_lengths)
            loss = combined_loss(out.float(), batch.targets, cfg.mse_weight, cfg.rank_weight, cfg.corr_weight,
                                 cfg.clip_tau, cfg.rank_margin)
            (loss / cfg.accumulate).backward()
            if step % cfg.accumulate == 0 or step == len(self.train_loader):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
                    self.scheduler.step()
            total += loss.item() * len(batch.index)
            n += len(batch.index)
            progress.update(task, advance=1, description=f"epoch {epoch} loss {total / n:.4f}")
        progress.remove_task(task)
        return total / max(n, 1)

    def validate(self) -> tuple[dict[str, dict[str, float]], float, np.ndarray, np.ndarray]:
        pred, true, loss = predict(self.model, self.val_loader, self.device, self.amp)
        return target_metrics(pred, true, self.model.cfg.target_names), loss, pred, true

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "train_config": self.cfg.to_dict(),
            "data": self.splits.description,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "trainer_state": {
                "epoch": epoch, "best_srcc": self.best_srcc, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": self.history,
                "torch_rng": torch.get_rng_state(), "loader_rng": self.train_loader.generator.get_state(),
            },
        }

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> RunResult:
        cfg, console = self.cfg, self.console
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(
            {"train": cfg.to_dict(), "model": self.model.cfg.to_dict(), "data": self.splits.description}, indent=2))
        console.print(f"data: {self.splits.description}")
        console.print(f"model: {count_parameters(self.model):,} trainable parameters; targets "
                      + ", ".join(f"{t.name} [{t.low:g}, {t.high:g}]" for t in self.model.cfg.targets)
                      + f"; device {self.device}")
        metrics_log = self.run_dir / "metrics.jsonl"
        if self.start_epoch == 1:
            metrics_log.write_text("")
            untrained, vloss, _, _ = self.validate()
            self.history.append({"epoch": 0, "train_loss": None, "val_loss": vloss, "val": untrained})
            self._log(metrics_log, self.history[-1])
            console.print(format_epoch("0 (untrained)", None, untrained))
        else:
            console.print(f"resuming {self.run_dir} at epoch {self.start_epoch} (best so far: epoch {self.best_epoch}, "
                          f"mean SRCC {self.best_srcc:.4f})")
        untrained = self.history[0]["val"]
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)
        with progress:
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                if self.bad_epochs >= cfg.patience:
                    break
                t0 = time.perf_counter()
                train_loss = self.train_epoch(epoch, progress)
                val, vloss, _, _ = self.validate()
                entry = {"epoch": epoch, "train_loss": train_loss, "val_loss": vloss, "val": val,
                         "seconds": round(time.perf_counter() - t0, 2)}
                self.history.append(entry)
                self._log(metrics_log, entry)
                console.print(format_epoch(epoch, train_loss, val))
                score = mean_srcc(val)
                if score > self.best_srcc:
                    self.best_srcc, self.best_epoch, self.bad_epochs = score, epoch, 0
                    save_checkpoint(self.ckpt_dir / "best.pt", self.model,
                                    {**self._state(epoch), "validation_metrics": val, "epoch": epoch})
                    console.print(f"BEST SAVED (mean SRCC {score:.4f}) -> {self.ckpt_dir / 'best.pt'}")
                else:
                    self.bad_epochs += 1
                    console.print(f"Patience: {self.bad_epochs}/{cfg.patience}")
                save_checkpoint(self.ckpt_dir / "last.pt", self.model, {**self._state(epoch), "epoch": epoch})
                console.print("-" * 40)
        if self.bad_epochs >= cfg.patience:
            console.print(f"EARLY STOPPING: no improvement in {cfg.patience} epochs")
        return self._finish(untrained)

    def _log(self, path: Path, entry: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _finish(self, untrained: dict[str, dict[str, float]]) -> RunResult:
        best_path = self.ckpt_dir / "best.pt"
        if not best_path.is_file():
            raise MosError(f"{self.run_dir}: training produced no checkpoint")
        best = load_checkpoint(best_path)
        self.model.load_state_dict(best["state_dict"])
        pred, true, _ = predict(self.model, self.val_loader, self.device, self.amp)
        names = self.model.cfg.target_names
        items = self.splits.validation.items
        with (self.run_dir / "val_predictions.csv").open("w", encoding="utf-8") as f:
            f.write("id," + ",".join(f"{n},true_{n}" for n in names) + "\n")
            for i, it in enumerate(items):
                f.write(f"{it.id}," + ",".join(f"{pred[i, j]:.4f},{true[i, j]:.4f}" for j in range(len(names))) + "\n")
        systems = [it.system for it in items]
        levels = {n: {k: v.as_dict() for k, v in evaluate_levels(pred[:, j], true[:, j],
                                                                  systems if all(systems) else None).items()}
                  for j, n in enumerate(names)}
        (self.run_dir / "best_metrics.json").write_text(json.dumps({"epoch": self.best_epoch, "levels": levels}, indent=2))
        plot_curves(self.history, names, self.run_dir / "curves.png")
        plot_scatter(pred, true, names, [(t.low, t.high) for t in self.model.cfg.targets], self.run_dir / "scatter.png")
        self.console.print(f"best epoch {self.best_epoch}: mean validation SRCC {self.best_srcc:.4f} "
                           f"(untrained {mean_srcc(untrained):.4f})")
        for n in names:
            for level, m in levels[n].items():
                self.console.print(f"  {n} [{level.upper()}] MSE={m['mse']:.4f} LCC={m['lcc']:.4f} "
                                   f"SRCC={m['srcc']:.4f} KTAU={m['ktau']:.4f}")
        return RunResult(self.run_dir, self.best_epoch, self.best_srcc, untrained, best["validation_metrics"])
