"""`mos export --pretrained NAME --out DIR`: a published quality model as a ready bundle, no
training. Only "distillmos" (Distill-MOS 0.9.1 from its PyPI package, mos.model.encoders.distillmos):
its encoder, its own head (1 + 4 * sigmoid of a linear map of the pooled embedding), one target
`mos` on the 1-5 scale, 7.68 s windows.

The model is a MosModel (pooled head with no hidden layers, a sigmoid output on the target's range)
whose head is the package's; its checkpoint (the head alone: the frozen encoder is read from the
installed package again, pinned by sha256) is written to a small run folder beside the bundle,
DIR.run, so that `mos export --check DIR` can verify the bundle again later. Then it is exported
and verified as any trained model is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from mos.errors import MosError
from mos.model import ModelConfig, MosModel
from mos.model.config import TargetSpec
from mos.model.encoders import build_audio_encoder, configure

PRETRAINED = ("distillmos",)
TARGET = "mos"


def pretrained_model(name: str) -> MosModel:
    """The published model `name` as a MosModel (eval mode), or a one-line MosError."""
    if name not in PRETRAINED:
        raise MosError(f"--pretrained {name!r}: expected {' or '.join(PRETRAINED)}")
    from mos.model.encoders import distillmos

    encoder = build_audio_encoder(name)
    cfg = ModelConfig(text_encoder="none", head="pooled", head_layers=(), head_activation="none",
                      head_output="sigmoid", dropout=0.0,
                      targets=[TargetSpec(TARGET, distillmos.LOW, distillmos.HIGH, 0.0, 1.0)])
    configure(cfg, name, encoder.info)
    model = MosModel(cfg, audio_encoder=encoder)
    linear3 = encoder.backbone.transformer_pool_attn.pool.linear3
    with torch.no_grad():
        model.heads[TARGET].weight.copy_(linear3.weight)
        model.heads[TARGET].bias.copy_(linear3.bias)
    return model.eval()


def run_dir_for(out: Path) -> Path:
    """Where the checkpoint of a pretrained bundle at `out` lives: `<out>.run` beside it."""
    return out.parent / f"{out.name}.run"


def write_pretrained_run(name: str, out: Path) -> Path:
    """Write the run folder (checkpoints/best.pt) of pretrained model `name` for a bundle at `out`."""
    from mos.trainer.checkpoint import save_checkpoint

    model = pretrained_model(name)
    run = run_dir_for(out)
    checkpoint = run / "checkpoints" / "best.pt"
    save_checkpoint(checkpoint, model, {"data": {"pretrained": name, "source": model.audio_encoder.info.name}})
    return run


def export_pretrained(name: str, out: Path | None, opset: int = 17, fp16: bool = False, verify: bool = True,
                      log: Callable[[str], None] = lambda m: None):
    """Export pretrained model `name` to a verified bundle at `out` (required)."""
    from mos.export.build import export_bundle

    if out is None:
        raise MosError(f"--pretrained {name}: give the bundle directory with --out DIR")
    out = Path(out)
    run = write_pretrained_run(name, out)
    log(f"{name}: checkpoint of its published head in {run}")
    return export_bundle(run, out=out, opset=opset, fp16=fp16, verify=verify)
