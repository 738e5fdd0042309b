"""What every pretrained audio encoder provides: `EncoderInfo` (rate, window, size, padding
behaviour, where its weights come from) and the `PretrainedAudioEncoder` module contract.

Contract (waveform in, frames out, feature extraction inside, so it exports to ONNX whole):

    features(waveform [B, N] float32 at info.sample_rate, zero past each length, lengths [B] int64)
        -> (feats [B, T, ...] float32, frame_lengths [B] int64)     the frozen, cacheable part
    mix(feats) -> frames [B, T, D = info.out_dim]                    the trainable part after it
    forward(waveform, lengths) = (mix(features(...)), frame_lengths)

The pretrained weights live under the attribute `backbone` (frozen unless fine-tuned; a frozen
backbone is not written into checkpoints, it is loaded again from its source and checked by
sha256); trainable layers that must follow the cache (e.g. the learned weighting of hidden
layers) live under `mixer` and are always trained and saved. Frames past `frame_lengths` are zero.
A clip must give the same frames alone or zero-padded in a batch, unless `info.padding_invariant`
is False (then callers batch only equal lengths).

Each family module (aisfx, distillmos, clap, ast, ssl, laion_clap, m2d) declares FEATURES_VERSION, an int bumped
whenever its front end or forward changes the features it gives for the same weights and audio;
`info.code_version` carries it, and caches of features (mos.trainer.feature_cache) key on it, so
features made by other code are never reused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mos.model.frontend import float32_region


@dataclass(frozen=True)
class EncoderInfo:
    """What a resolved encoder spec is, without building it."""

    kind: str  # "aisfx", "distillmos", "clap", "ast", "wav2vec2", "hubert", "wavlm", "data2vec-audio", "m2d"
    name: str  # for printouts and mos.json, e.g. "aisfx 0.1.2 (PyPI), sound-effects CNN"
    source: str  # the directory or file the weights come from
    sample_rate: int
    out_dim: int
    sha256: str  # over the weight/config files: pins the encoder
    code_version: str  # the code that turns audio into features, e.g. "clap.v1" (see features_version)
    # Fixed input length the encoder was trained with (CLAP 10 s, AST 1024 frames), or None when
    # any length works (the training window then comes from --max-seconds).
    window_seconds: float | None = None
    padding_invariant: bool = True
    parameters: int = 0  # pretrained parameters (0 when unknown before building)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def features_version(family: str, version: int) -> str:
    """`EncoderInfo.code_version` of a family's code at FEATURES_VERSION `version`: "<family>.v<n>"."""
    return f"{family}.v{version}"


class PretrainedAudioEncoder(nn.Module):
    """Base class; subclasses set `info`, `backbone` (and `mixer` when needed) and implement
    `features` (and `mix`, identity by default)."""

    info: EncoderInfo
    backbone: nn.Module

    @property
    def out_dim(self) -> int:
        return self.info.out_dim

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def mix(self, feats: torch.Tensor) -> torch.Tensor:
        return feats

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frame_lengths = self.features(waveform, lengths)
        return self.mix(feats), frame_lengths

    def freeze(self, frozen: bool = True) -> "PretrainedAudioEncoder":
        """Freeze (or unfreeze) the backbone's parameters; `mixer` stays trainable."""
        self.frozen = frozen
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        return self

    def train(self, mode: bool = True) -> "PretrainedAudioEncoder":
        """A frozen backbone stays in eval mode (no dropout, BatchNorm statistics kept); a fine-tuned
        one trains, except its BatchNorm layers, whose statistics small MOS batches would spoil."""
        super().train(mode)
        if getattr(self, "frozen", True):
            self.backbone.eval()
        else:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


class WindowEmbeddingEncoder(PretrainedAudioEncoder):
    """An encoder with a fixed window that gives one embedding per window (CLAP, AST): the in-graph
    `front_end(waveform, lengths)` feeds `embed`, which gives [B, D]; frames [B, 1, D], one per clip."""

    def __init__(self, info: EncoderInfo, front_end: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.info = info
        self.front_end = front_end
        self.backbone = backbone

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone(features)

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.front_end(waveform, lengths)
        with float32_region(waveform.device.type):
            emb = self.embed(x)
        return emb.unsqueeze(1), torch.ones_like(lengths, dtype=torch.int64)


def is_laion_checkpoint(spec: str) -> bool:
    """Whether an encoder spec names a LAION-CLAP checkpoint file (a path ending in .pt), which
    mos.model.encoders.laion_clap reads, as an audio or a text encoder."""
    return spec.lower().endswith(".pt")


def is_m2d_checkpoint(spec: str) -> bool:
    """Whether an audio encoder spec names an M2D checkpoint file (a path ending in .pth, inside a
    folder named as nttcslab/m2d releases are), which mos.model.encoders.m2d reads."""
    return spec.lower().endswith((".pth", ".pth#clap"))
