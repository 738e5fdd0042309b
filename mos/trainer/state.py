"""What makes a run reproducible and resumable: the seeds, the device, and every random
generator a training epoch draws from, as plain data that `last.pt` records (loadable with
weights_only) and a resume restores, so that a resumed run continues where the committed epoch
left off."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from mos.errors import MosError
from mos.trainer.batches import ClipDataset


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
