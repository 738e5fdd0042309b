"""A stack of frozen pretrained audio encoders (`--audio-encoder aisfx+distillmos`) behind the one
encoder contract (mos.model.encoders.base): each member runs on the waveform as it does alone, its
frames are averaged over its valid frames (the pooled head's masked mean), and the members' pooled
embeddings are concatenated: frames [B, 1, sum of the members' widths], one per clip window.

`features` gives each member's features averaged over its valid frames, flattened and concatenated
([B, 1, F]); `mix` splits them again and applies each member's own `mix` (e.g. the learned layer
weighting of a speech model, which stays trainable). Averaging before `mix` equals averaging after
it because every family's `mix` is linear per frame (identity or a weighted sum of layers).

Members share one sample rate (the bundle's): a stack of encoders at different rates is refused
in one line naming the rates. Members that fix a window must fix the same one; it is the stack's.
Members are frozen (no --finetune-audio) and give one embedding per window, so the fusion head,
which attends over frames, does not apply. The trainer caches each member's features under the
member's own key (mos.trainer.feature_cache), so a member used alone and in a stack shares them.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from mos.errors import MosError
from mos.model.encoders.base import EncoderInfo, PretrainedAudioEncoder
from mos.model.masking import masked_mean

KIND = "stack"
SEPARATOR = "+"


def is_stack(spec: str) -> bool:
    """Whether an --audio-encoder spec names a stack (two or more specs joined with '+'; a path
    that exists is one encoder, even with a '+' in its name)."""
    return SEPARATOR in spec and not Path(spec).exists()


def member_specs(spec: str) -> list[str]:
    """The members of a stack spec, or a one-line MosError for an empty or repeated member."""
    parts = [p.strip() for p in spec.split(SEPARATOR)]
    if len(parts) < 2 or any(not p for p in parts):
        raise MosError(f"--audio-encoder {spec!r}: a stack joins two or more encoders with '+', e.g. aisfx+distillmos")
    if len(set(parts)) != len(parts):
        raise MosError(f"--audio-encoder {spec!r}: names an encoder twice")
    if "conv" in parts:
        raise MosError(f"--audio-encoder {spec!r}: a stack joins pretrained encoders; 'conv' trains from scratch")
    return parts


def combine(spec: str, infos: list[EncoderInfo]) -> EncoderInfo:
    """The stack's EncoderInfo from its members' (all resolved), or a one-line MosError when their
    rates or fixed windows differ."""
    rates = sorted({i.sample_rate for i in infos})
    if len(rates) > 1:
        listed = ", ".join(f"{i.kind} {i.sample_rate} Hz" for i in infos)
        raise MosError(f"--audio-encoder {spec!r}: stacked encoders must share a sample rate ({listed}); "
                       f"stacks of mixed rates are not supported yet")
    windows = sorted({i.window_seconds for i in infos if i.window_seconds is not None})
    if len(windows) > 1:
        listed = ", ".join(f"{i.kind} {i.window_seconds:g} s" for i in infos if i.window_seconds is not None)
        raise MosError(f"--audio-encoder {spec!r}: stacked encoders fix different windows ({listed})")
    sha = hashlib.sha256("\n".join(i.sha256 for i in infos).encode()).hexdigest()
    return EncoderInfo(
        kind=KIND,
        name=" + ".join(i.name for i in infos),
        source=spec,
        sample_rate=rates[0],
        out_dim=sum(i.out_dim for i in infos),
        sha256=sha,
        code_version="+".join(i.code_version for i in infos),
        window_seconds=windows[0] if windows else None,
        padding_invariant=all(i.padding_invariant for i in infos),
        parameters=sum(i.parameters for i in infos),
    )


def pool_features(feats: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Features [B, T, ...] -> their mean over each row's valid frames, flattened: [B, prod(...)]."""
    return masked_mean(feats.reshape(feats.shape[0], feats.shape[1], -1), frame_lengths)


class StackedAudioEncoder(PretrainedAudioEncoder):
    """Frozen members side by side: pooled features concatenated, each member's `mix` after them."""

    def __init__(self, info: EncoderInfo, members: list[PretrainedAudioEncoder]) -> None:
        super().__init__()
        self.info = info
        self.members = nn.ModuleList(members)
        self.shapes = [self._feature_shape(m) for m in members]  # each member's features per frame

    @staticmethod
    def _feature_shape(member: PretrainedAudioEncoder) -> tuple[int, ...]:
        """The shape of one frame of `member`'s features, from one second of silence."""
        rate = member.info.sample_rate
        with torch.no_grad():
            feats, _ = member.eval().features(torch.zeros(1, rate), torch.tensor([rate]))
        return tuple(int(n) for n in feats.shape[2:])

    @property
    def backbone(self) -> nn.ModuleList:  # type: ignore[override]
        """The members' pretrained weights (what the trainer counts and keeps in eval mode)."""
        return nn.ModuleList([m.backbone for m in self.members])

    def backbone_prefixes(self) -> tuple[str, ...]:
        """Where the frozen weights sit in this module's state dict (left out of checkpoints)."""
        return tuple(f"members.{k}.backbone." for k in range(len(self.members)))

    @property
    def widths(self) -> list[int]:
        """Each member's pooled feature size (flattened)."""
        return [math.prod(s) for s in self.shapes]

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = []
        for member in self.members:
            feats, frame_lengths = member.features(waveform, lengths)
            pooled.append(pool_features(feats.float(), frame_lengths))
        return torch.cat(pooled, dim=1).unsqueeze(1), torch.ones_like(lengths, dtype=torch.int64)

    def mix(self, feats: torch.Tensor) -> torch.Tensor:
        out, start = [], 0
        for member, shape, width in zip(self.members, self.shapes, self.widths):
            part = feats[..., start:start + width].reshape(*feats.shape[:-1], *shape)
            out.append(member.mix(part))
            start += width
        return torch.cat(out, dim=-1)

    def freeze(self, frozen: bool = True) -> "StackedAudioEncoder":
        if not frozen:
            raise MosError("--finetune-audio: a stack of encoders is always frozen")
        self.frozen = True
        for member in self.members:
            member.freeze(True)
        return self

    def train(self, mode: bool = True) -> "StackedAudioEncoder":
        nn.Module.train(self, mode)
        for member in self.members:
            member.train(mode)
        return self
