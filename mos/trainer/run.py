"""`mos train` end to end: pick the data (the demo set when none is given), split, train."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from mos.errors import MosError
from mos.trainer.config import TrainConfig
from mos.trainer.loop import RunResult, Trainer
from mos.trainer.splits import resolve_splits


def demo_data(cfg: TrainConfig, console: Console) -> Path:
    from mos.data.demo import build_demo

    root = build_demo(Path(cfg.demo_dir))
    console.print(f"demo data: {root}")
    return root


def resumed_config(cfg: TrainConfig) -> TrainConfig:
    """On --resume, the run's saved config wins, except for how long and where to train."""
    saved = Path(cfg.runs_dir) / cfg.name / "config.json"
    if not saved.is_file():
        raise MosError(f"{saved}: nothing to resume (no such run)")
    train = json.loads(saved.read_text(encoding="utf-8"))["train"]
    train.update(epochs=cfg.epochs, patience=cfg.patience, device=cfg.device, resume=True)
    return TrainConfig(**train)


def run_training(cfg: TrainConfig, console: Console) -> RunResult:
    if cfg.resume:
        cfg = resumed_config(cfg)
    data = Path(cfg.data) if cfg.data else demo_data(cfg, console)
    columns = None
    if cfg.columns:
        from mos.data.table import parse_column_spec

        columns = parse_column_spec(cfg.columns)
    splits = resolve_splits(data, columns, cfg.val_fraction, cfg.seed)
    return Trainer(cfg, splits, console).fit()
