"""Make a bundle to benchmark when no trained one is at hand: the default edge model
(ModelConfig() defaults: DFT-conv log-mel, 4 conv blocks, all-MiniLM-L6-v2 text, cross-attention)
with seeded random weights, saved as a checkpoint and exported with `mos export`'s code
(opset 17, int8 static QDQ variant). Speed does not depend on the weight values; accuracy is
measured elsewhere (benchmarks/mushra_accuracy.py, the export's own int8 report).

    python benchmarks/make_bundle.py [--run runs/bench] [--text-encoder minilm|none|DIR] [--fp16]
        [--audio-encoder conv|aisfx|DIR] [--head fusion|pooled]

With --audio-encoder, the pretrained encoder's own weights (e.g. aisfx's, or the random-weight
directories of benchmarks/make_encoder_dirs.py) and a random head.

Writes <run>/checkpoints/best.pt and <run>/bundle/. A trained run works the same way:
    mos train && mos export runs/demo --quantize int8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=Path("runs/bench"))
    p.add_argument("--text-encoder", default="minilm")
    p.add_argument("--fp16", action="store_true", help="also export the fp16 variant (for GPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audio-encoder", default="conv")
    p.add_argument("--head", default="fusion")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 variant")
    args = p.parse_args(argv)

    import torch

    from mos.export import export_bundle
    from mos.model import ModelConfig, MosModel
    from mos.trainer.checkpoint import save_checkpoint

    torch.manual_seed(args.seed)
    cfg = ModelConfig(text_encoder=args.text_encoder, head=args.head)
    if args.audio_encoder != "conv":
        from mos.model.encoders import configure, resolve_audio_encoder

        configure(cfg, args.audio_encoder, resolve_audio_encoder(args.audio_encoder))
    if cfg.uses_text:
        from mos.model.text_encoder import load_text_encoder

        enc = load_text_encoder(cfg.text_encoder, cfg.max_text_tokens)
        cfg.text_dim, cfg.text_encoder_sha256 = enc.dim, enc.sha256
    model = MosModel(cfg).eval()
    ckpt = args.run / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, model, {"data": "random weights (benchmarks/make_bundle.py)", "validation_metrics": {},
                                  "epoch": 0, "train_config": {}})
    # Random weights and no data to judge int8 on: --force writes it (speed does not depend on weights).
    report = export_bundle(args.run, args.run / "bundle", opset=17, quantize=None if args.no_int8 else "int8",
                           fp16=args.fp16, force=True)
    print("\n".join(report.format()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
