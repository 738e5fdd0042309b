"""Local transformers directories at the published sizes of three encoders, with RANDOM weights,
for speed measurements only (speed does not depend on weight values; nothing is downloaded):

    python benchmarks/make_encoder_dirs.py [--out benchmarks/out/encoders]

- clap-htsat-unfused: ClapConfig() defaults = laion/clap-htsat-unfused's shape (HTSAT-tiny audio
  tower: depths 2,2,6,2, patch embedding 96, 64 mels, spec 256, projection 512; RoBERTa-base text);
- ast-audioset: ASTConfig() defaults = MIT/ast-finetuned-audioset-10-10-0.4593's shape (ViT-base,
  128 mel bins, 1024 frames, strides 10/10) with an ASTFeatureExtractor;
- wavlm-base-plus: WavLMConfig() defaults = microsoft/wavlm-base-plus's shape (12 layers, 768,
  GroupNorm feature extractor) with a Wav2Vec2FeatureExtractor (no normalisation, attention mask).
Each directory gets config.json, model.safetensors and the feature extractor's
preprocessor_config.json, as `save_pretrained` writes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/encoders"))
    p.add_argument("--only", default="clap,ast,wavlm", help="comma-separated subset of clap, ast, wavlm")
    args = p.parse_args(argv)

    import torch
    from transformers import (ASTConfig, ASTFeatureExtractor, ASTModel, ClapConfig, ClapFeatureExtractor, ClapModel,
                              Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel)

    torch.manual_seed(0)
    wanted = set(args.only.split(","))
    made = []
    if "clap" in wanted:
        d = args.out / "clap-htsat-unfused"
        ClapModel(ClapConfig()).save_pretrained(d)
        ClapFeatureExtractor().save_pretrained(d)
        made.append(d)
    if "ast" in wanted:
        d = args.out / "ast-audioset"
        ASTModel(ASTConfig()).save_pretrained(d)
        ASTFeatureExtractor().save_pretrained(d)
        made.append(d)
    if "wavlm" in wanted:
        d = args.out / "wavlm-base-plus"
        WavLMModel(WavLMConfig()).save_pretrained(d)
        Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(d)
        made.append(d)
    for d in made:
        size = sum(f.stat().st_size for f in d.iterdir()) / 2**20
        print(f"{d}: {size:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
