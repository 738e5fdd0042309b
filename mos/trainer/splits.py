"""Choose the training and validation manifests for a run (demo set, dataset tree or table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mos.data.detect import open_dataset
from mos.data.manifest import Manifest
from mos.errors import MosError

TRAIN_SPLITS = ("train", "all")
VALIDATION_SPLITS = ("validation", "dev", "valid", "val")


@dataclass
class Splits:
    train: Manifest
    validation: Manifest
    description: str


def _require_targets(m: Manifest, split: str) -> None:
    if not m.targets:
        raise MosError(f"{m.source}: the {split} split has no scores to train on")
    for it in m.items:
        missing = [t for t in m.target_names if t not in it.targets]
        if missing:
            raise MosError(f"{m.source}: clip {it.id} has no value for target(s) {', '.join(missing)}")


def random_split(m: Manifest, fraction: float, seed: int) -> tuple[Manifest, Manifest]:
    """Hold out a seeded random `fraction` of the items as validation."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(m.items))
    n_val = max(1, int(round(fraction * len(m.items))))
    val_idx = set(order[:n_val].tolist())
    train = [it for i, it in enumerate(m.items) if i not in val_idx]
    val = [it for i, it in enumerate(m.items) if i in val_idx]
    return Manifest(train, m.targets, m.source), Manifest(val, m.targets, m.source)


def resolve_splits(data: Path, columns: object, val_fraction: float, seed: int) -> Splits:
    splits = open_dataset(data, columns)  # type: ignore[arg-type]
    train_name = next((s for s in TRAIN_SPLITS if s in splits), None)
    if train_name is None:
        raise MosError(f"{data}: no training split found (looked for {', '.join(TRAIN_SPLITS)})")
    train = splits[train_name]
    val_name = next((s for s in VALIDATION_SPLITS if s in splits), None)
    _require_targets(train, train_name)
    if val_name is not None:
        validation = splits[val_name]
        _require_targets(validation, val_name)
        desc = f"{data} ({train_name}: {len(train)} clips, {val_name}: {len(validation)} clips)"
    else:
        train, validation = random_split(train, val_fraction, seed)
        desc = f"{data} ({len(train)} train / {len(validation)} held-out clips, seed {seed})"
    if len(train) < 2 or len(validation) < 2:
        raise MosError(f"{data}: need at least 2 training and 2 validation clips")
    return Splits(train, validation, desc)
