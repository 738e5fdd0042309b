"""Training configuration: one dataclass, loadable from a JSON/TOML file and overridable by flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mos.errors import MosError


@dataclass
class TrainConfig:
    """What `mos train` does. `data=None` means the built-in demo set."""

    data: str | None = None
    demo_dir: str = "data/demo"  # where the built-in demo set is generated when data is None
    name: str = "demo"
    runs_dir: str = "runs"
    columns: str | None = None  # column mapping for a generic CSV/JSONL (see mos.data.table)
    epochs: int = 30
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 6
    seed: int = 0
    mse_weight: float = 1.0
    rank_weight: float = 0.5
    corr_weight: float = 0.5
    clip_tau: float = 0.0  # > 0: clipped MSE (errors below tau, in normalised units, cost nothing)
    rank_margin: float = 0.1
    gain_db: float = 0.0  # augmentation: random gain of up to +-gain_db dB on training clips
    max_seconds: float = 10.0  # training window: random crop of longer clips; also the scoring window
    val_fraction: float = 0.2  # used when the data has no validation split
    group_by: str | None = None  # split (and fold) by this column's value instead of by clip
    val_data: str | None = None  # an explicit validation file (or tree)
    folds: int = 0  # >= 2: K-fold cross-validation instead of one run
    text_encoder: str = "minilm"
    device: str = "auto"
    amp: bool = True  # mixed precision (bf16) on CUDA only
    num_workers: int = 0
    cache_audio: bool = True  # keep decoded training audio in memory when it fits (< cache_limit_mb)
    cache_limit_mb: int = 2048
    resume: bool = False
    overwrite: bool = False  # replace an existing run folder of the same name

    def check(self) -> None:
        """MosError for values no run can use."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "accumulate": self.accumulate,
                    "patience": self.patience}
        for name, value in positive.items():
            if value < 1:
                raise MosError(f"--{name.replace('_', '-')} {value}: must be at least 1")
        if not self.max_seconds > 0:
            raise MosError(f"--max-seconds {self.max_seconds:g}: must be positive (it is the training and scoring window)")
        if not 0 < self.val_fraction < 1:
            raise MosError(f"--val-fraction {self.val_fraction:g}: must lie between 0 and 1")
        if self.folds == 1 or self.folds < 0:
            raise MosError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        if self.folds and self.val_data:
            raise MosError("--folds and --val-data exclude each other: cross-validation makes its own held-out folds")
        if self.resume and self.overwrite:
            raise MosError("--resume and --overwrite exclude each other")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_file(cls, path: Path) -> "TrainConfig":
        return cls(**cls.read_file(path))

    @classmethod
    def read_file(cls, path: Path) -> dict[str, Any]:
        """The settings a JSON/TOML config file gives (known TrainConfig fields only)."""
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".toml":
                import tomllib

                raw = tomllib.loads(text)
            else:
                raw = json.loads(text)
        except FileNotFoundError:
            raise MosError(f"{path}: config file not found") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise MosError(f"{path}: not a valid config file: {exc}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise MosError(f"{path}: unknown config key(s): {', '.join(unknown)}")
        return raw

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig(**d)
