"""Checkpoints: model weights + the configs needed to rebuild, export or resume a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mos.errors import MosError
from mos.model import ModelConfig, MosModel


def save_checkpoint(path: Path, model: MosModel, extra: dict[str, Any]) -> None:
    """Atomically write {model_config, state_dict, **extra} to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model_config": model.cfg.to_dict(), "state_dict": model.state_dict(), **extra}, tmp)
    tmp.replace(path)


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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a bad file
        raise MosError(f"{path}: not a readable mos checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "state_dict" not in ckpt:
        raise MosError(f"{path}: not a mos checkpoint (no model_config/state_dict)")
    return ckpt


def load_model(path: Path, map_location: str | torch.device = "cpu") -> tuple[MosModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint (eval mode) and return it with the checkpoint dict."""
    ckpt = load_checkpoint(find_checkpoint(path), map_location)
    model = MosModel(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
