"""Bundle metadata: the content of a bundle's mos.json (everything but the file hashes), built
from a model and its checkpoint, and where that checkpoint is as seen from the bundle."""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mos import __version__
from mos.bundle import EMBEDDING_OUTPUT, SCHEMA
from mos.export.onnx_io import EXPORTER
from mos.model import MosModel

# What a user of audio.onnx must do with its outputs (schema 2: the graph does not clamp).
POSTPROCESS = ("outputs are on each target's scale but not clamped: average the windows of a long clip "
               "(window_seconds each, weighted by length), then clamp each target to its [low, high]")


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars -> float/int, NaN/inf -> None, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalar
        try:
            return jsonable(value.item())
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def encoder_meta(model: MosModel) -> dict[str, Any]:
    """What mos.json says about the audio encoder (no local paths)."""
    cfg = model.cfg
    if not cfg.pretrained_audio:
        return {"kind": "conv", "name": "built-in conv encoder, trained from scratch", "sample_rate": int(cfg.sample_rate),
                "out_dim": int(cfg.audio_dim)}
    info = model.audio_encoder.info
    meta = {"kind": info.kind, "name": info.name, "sample_rate": int(info.sample_rate), "out_dim": int(info.out_dim),
            "fixed_window_seconds": info.window_seconds, "parameters": int(info.parameters),
            "sha256": info.sha256, "finetuned": bool(cfg.finetune_audio)}
    members = getattr(model.audio_encoder, "members", None)
    if members is not None:  # a stack (mos.model.encoders.stack): each member's pooled embedding, in order
        meta["members"] = [{"kind": m.info.kind, "name": m.info.name, "out_dim": int(m.info.out_dim),
                            "sha256": m.info.sha256} for m in members]
    return meta


def checkpoint_reference(checkpoint: Path, bundle: Path) -> str:
    """Where the checkpoint is, as seen from the bundle: relative when both sit in one run folder."""
    checkpoint, bundle = checkpoint.resolve(), bundle.resolve()
    if bundle.parent in checkpoint.parents:
        return os.path.relpath(checkpoint, bundle)
    return str(checkpoint)


def resolve_checkpoint(reference: str, bundle: Path) -> Path:
    path = Path(reference)
    return path if path.is_absolute() else (bundle / path).resolve()


def build_meta(
    model: MosModel,
    ckpt: dict[str, Any],
    checkpoint: Path,
    checkpoint_sha256: str,
    out: Path,
    opset: int,
    files: dict[str, str],
    audio_inputs: list[str],
    audio_outputs: list[str],
    text: dict[str, Any] | None,
    variants: dict[str, str],
    variant_info: dict[str, Any],
) -> dict[str, Any]:
    """mos.json content with schema; `files` maps every bundle file name to '' (hashed later)."""
    import onnx
    import onnxruntime
    import torch

    cfg = model.cfg
    return jsonable({
        "schema": SCHEMA,
        "sample_rate": int(cfg.sample_rate),
        "window_seconds": float(cfg.window_seconds),
        "targets": [{"name": t.name, "low": float(t.low), "high": float(t.high)} for t in cfg.targets],
        "text": text,
        "audio": {"model": "audio.onnx", "inputs": audio_inputs, "outputs": audio_outputs,
                  "outputs_clamped": False, "postprocess": POSTPROCESS,
                  "padding_invariant": bool(cfg.padding_invariant), "encoder": encoder_meta(model),
                  **({"embedding": {"output": EMBEDDING_OUTPUT, "dim": int(cfg.audio_dim),
                                    "what": "the pooled audio embedding: the masked mean of the encoder's frames "
                                            "(caption-independent); average a long clip's windows weighted by length"}}
                     if EMBEDDING_OUTPUT in audio_outputs else {}),
                  **({"spread": True, "distribution": {
                      "bins": int(cfg.distribution_bins),
                      "kernel": cfg.distribution_kernel,
                      "smoothing": [cfg.smoothing_width(t) for t in cfg.targets],
                      "spread_outputs": "<target>_std: the listener spread (std of single ratings), "
                                        "smoothing removed; average a long clip's windows as a mixture"}}
                     if cfg.predicts_spread else {})},
        "variants": variants,
        "training": {
            "data": ckpt.get("data"),
            "epoch": ckpt.get("epoch"),
            "validation_metrics": ckpt.get("validation_metrics", {}),
            "checkpoint": checkpoint_reference(checkpoint, out),
            "checkpoint_sha256": checkpoint_sha256,
        },
        # A `mos distill` student: its teacher (bundle sha256, validation metrics) and the mix.
        **({"distillation": ckpt["distillation"]} if ckpt.get("distillation") else {}),
        "export": {
            "opset": int(opset),
            "exporter": EXPORTER,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "mos": __version__,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **({"variants": variant_info} if variant_info else {}),
        },
        "files": files,
    })
