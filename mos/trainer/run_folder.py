"""A run's folder `runs/<name>/`: what counts as one, the refusal to train into an existing one
unless --resume or --overwrite says what to do, its removal with --overwrite, and the predictions
CSV that a run (`val_predictions.csv`) and a cross-validation (`oof_predictions.csv`, each fold's
`heldout_predictions.csv`) write into it. The trainer (mos.trainer.loop) writes the rest: the
config, checkpoints, metrics lines, best metrics and plots."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from rich.console import Console

from mos.data.manifest import Item
from mos.errors import MosError
from mos.trainer.config import TrainConfig


def is_run_folder(path: Path) -> bool:
    return any((path / name).exists() for name in ("config.json", "checkpoints", "metrics.jsonl", "cv.json", "folds",
                                                  "distill.json"))


def check_run_folder(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to train into an existing run folder unless --resume or --overwrite says what to do."""
    if cfg.resume or not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if not cfg.overwrite:
        raise MosError(f"{run_dir}: a run folder of that name exists; --resume continues it, --overwrite replaces it "
                       f"(or choose another --name)")
    if not is_run_folder(run_dir):
        raise MosError(f"{run_dir}: exists and is not a mos run folder; --overwrite will not delete it")


def clear_run_folder(run_dir: Path, cfg: TrainConfig, console: Console) -> None:
    """With --overwrite, remove the old run folder (just before the new run writes anything)."""
    if cfg.overwrite and not cfg.resume and run_dir.exists() and any(run_dir.iterdir()):
        check_run_folder(run_dir, cfg)
        shutil.rmtree(run_dir)
        console.print(f"--overwrite: removed the previous run folder {run_dir}", markup=False)


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
