"""Checkpoints: model weights + the configs needed to rebuild, export or resume a run.

Writes are atomic (mos.files: a temporary file beside it, flushed to disk, then renamed), so a
kill leaves either the old file or the new one. Reads use `torch.load(weights_only=True)`:
a checkpoint holds only tensors, numbers, strings and containers of them.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from mos.errors import MosError
from mos.files import replace_atomically
from mos.model import ModelConfig, MosModel


def save_checkpoint(path: Path, model: MosModel, extra: dict[str, Any]) -> None:
    """Atomically write {model_config, state_dict, **extra} to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model_config": model.cfg.to_dict(), "state_dict": model.checkpoint_state(), **extra}
    replace_atomically(path, lambda tmp: torch.save(payload, tmp))


def copy_checkpoint(src: Path, dest: Path) -> None:
    """Atomically make `dest` a copy of `src`."""
    replace_atomically(dest, lambda tmp: shutil.copyfile(src, tmp))



def find_checkpoint(path: Path) -> Path:
    """A checkpoint file, or a run folder (-> checkpoints/best.pt)."""
    if path.is_dir():
        candidate = path / "checkpoints" / "best.pt"
        if not candidate.is_file():
            raise MosError(f"{path}: no checkpoints/best.pt in this run folder")
        return candidate
    if not path.is_file():
        raise MosError(f"{path}: no such checkpoint or run folder")
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, read without running any code from the file (weights_only)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain data; say what it met, on one line.
        first = " ".join(str(exc).split("Please file an issue")[0].split())[:200]
        raise MosError(f"{path}: not a mos checkpoint, or it holds more than weights and plain data ({first})") from None
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise MosError(f"{path}: not a readable mos checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "state_dict" not in ckpt:
        raise MosError(f"{path}: not a mos checkpoint (no model_config/state_dict)")
    return ckpt


def load_model(path: Path, map_location: str | torch.device = "cpu") -> tuple[MosModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint (eval mode) and return it with the checkpoint dict."""
    ckpt = load_checkpoint(find_checkpoint(path), map_location)
    model = MosModel(ModelConfig.from_dict(ckpt["model_config"]))
    try:
        model.load_checkpoint_state(ckpt["state_dict"])
    except MosError as exc:
        raise MosError(f"{path}: {exc}") from None
    return model.eval(), ckpt
