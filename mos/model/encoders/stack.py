"""A stack of frozen pretrained audio encoders (`--audio-encoder aisfx+distillmos`) behind the one
encoder contract (mos.model.encoders.base): each member runs on the waveform as it does alone, its
frames are averaged over its valid frames (the pooled head's masked mean), and the members' pooled
embeddings are concatenated: frames [B, 1, sum of the members' widths], one per clip window.

`features` gives each member's features averaged over its valid frames, flattened and concatenated
([B, 1, F]); `mix` splits them again and applies each member's own `mix` (e.g. the learned layer
weighting of a speech model, which stays trainable). Averaging before `mix` equals averaging after
it because every family's `mix` is linear per frame (identity or a weighted sum of layers).

The stack's sample rate (the bundle's) is its members' highest. A member made for a lower rate is
fed the stack's audio resampled inside the graph (ResampledEncoder, GraphResampler: mos.audio's
polyphase filter as a fixed-weight strided Conv1d, so also inside the exported audio.onnx), its
valid lengths mapped to ceil(n * new / old); its code_version gains "+from<rate>", so its cached features are never shared
with the member used alone (which reads the file at its own rate with mos.audio's resampler).
Members that fix a window must fix the same one in seconds; it is the stack's.
Members are frozen (no --finetune-audio) and give one embedding per window, so the fusion head,
which attends over frames, does not apply. The trainer caches each member's features under the
member's own key (mos.trainer.feature_cache), so a member used alone and in a stack at its own
rate shares them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mos.audio import lowpass_taps
from mos.errors import MosError
from mos.model.encoders.base import EncoderInfo, PretrainedAudioEncoder
from mos.model.masking import length_mask, masked_mean

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
    """The stack's EncoderInfo from its members' (all resolved) at their highest sample rate, or a
    one-line MosError when their fixed windows differ."""
    rate = max(i.sample_rate for i in infos)
    infos = [fed_at(i, rate) for i in infos]
    windows = sorted({i.window_seconds for i in infos if i.window_seconds is not None})
    if len(windows) > 1:
        listed = ", ".join(f"{i.kind} {i.window_seconds:g} s" for i in infos if i.window_seconds is not None)
        raise MosError(f"--audio-encoder {spec!r}: stacked encoders fix different windows ({listed})")
    sha = hashlib.sha256("\n".join(i.sha256 for i in infos).encode()).hexdigest()
    return EncoderInfo(
        kind=KIND,
        name=" + ".join(i.name for i in infos),
        source=spec,
        sample_rate=rate,
        out_dim=sum(i.out_dim for i in infos),
        sha256=sha,
        code_version="+".join(i.code_version for i in infos),
        window_seconds=windows[0] if windows else None,
        padding_invariant=all(i.padding_invariant for i in infos),
        parameters=sum(i.parameters for i in infos),
    )


def fed_at(info: EncoderInfo, rate: int) -> EncoderInfo:
    """`info` for a member fed audio at the stack's `rate`, resampled in the graph to its own rate
    (as it is when lower): that rate, and a code_version saying so ("+from<rate>")."""
    if info.sample_rate == rate:
        return info
    return replace(info, sample_rate=int(rate), code_version=f"{info.code_version}+from{rate}",
                   name=f"{info.name}, resampled in the graph from {rate} Hz")


class GraphResampler(nn.Module):
    """waveform [B, N] at `source` Hz -> [B, M] at `target` Hz inside the graph: mos.audio's
    resampler (scipy.signal.resample_poly's polyphase filter, zero padding at both ends) as a
    fixed-weight Conv1d with stride `down` and one output channel per polyphase branch, so its
    samples are those `read_audio` gives at `target` Hz (to float32 rounding), deterministic and
    traceable into ONNX for any length. M is at least ceil(N * target / source); the samples
    past that are zero."""

    def __init__(self, source: int, target: int) -> None:
        super().__init__()
        g = math.gcd(source, target)
        self.up, self.down = target // g, source // g
        taps, half_len = lowpass_taps(self.up, self.down)
        taps = taps * self.up
        per_branch = -(-taps.shape[0] // self.up)
        # Output j * up + p reads source samples j * down + last[p] - (per_branch - 1) .. j * down + last[p],
        # with branch (p * down + half_len) % up of the taps (reversed: they meet samples in increasing order).
        padded = np.zeros(per_branch * self.up)
        padded[: taps.shape[0]] = taps
        branches = padded.reshape(per_branch, self.up).T[:, ::-1]
        last = [(p * self.down + half_len) // self.up for p in range(self.up)]
        kernel = np.zeros((self.up, 1, max(last) + per_branch))
        for p in range(self.up):
            kernel[p, 0, last[p]: last[p] + per_branch] = branches[(p * self.down + half_len) % self.up]
        self.left = per_branch - 1
        self.right = kernel.shape[2] + self.down
        self.register_buffer("kernel", torch.from_numpy(kernel).float(), persistent=False)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid input samples -> valid output samples: ceil(n * target / source), as resample_poly."""
        lengths = lengths.to(torch.int64)
        return torch.div(lengths * self.up + self.down - 1, self.down, rounding_mode="floor")

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wave = waveform.float() * length_mask(lengths, waveform.shape[1]).to(torch.float32)
        wave = nn.functional.pad(wave, (self.left, self.right))
        out = nn.functional.conv1d(wave.unsqueeze(1), self.kernel, stride=self.down)  # [B, up, frames]
        out = out.transpose(1, 2).reshape(out.shape[0], -1)
        out_lengths = self.out_lengths(lengths)
        return out * length_mask(out_lengths, out.shape[1]).to(out.dtype), out_lengths


class ResampledEncoder(PretrainedAudioEncoder):
    """A stack member made for a lower rate than the stack's: the stack's audio resampled in the
    graph to the member's rate, then the member as it is; its info is fed_at(member's, rate)."""

    def __init__(self, encoder: PretrainedAudioEncoder, rate: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.resampler = GraphResampler(rate, encoder.info.sample_rate)
        self.info = fed_at(encoder.info, rate)
        self.frozen = getattr(encoder, "frozen", True)

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        return self.encoder.backbone

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.features(*self.resampler(waveform, lengths))

    def mix(self, feats: torch.Tensor) -> torch.Tensor:
        return self.encoder.mix(feats)

    def freeze(self, frozen: bool = True) -> "ResampledEncoder":
        self.frozen = frozen
        self.encoder.freeze(frozen)
        return self

    def train(self, mode: bool = True) -> "ResampledEncoder":
        nn.Module.train(self, mode)
        self.encoder.train(mode)
        return self


def pool_features(feats: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Features [B, T, ...] -> their mean over each row's valid frames, flattened: [B, prod(...)]."""
    return masked_mean(feats.reshape(feats.shape[0], feats.shape[1], -1), frame_lengths)


class StackedAudioEncoder(PretrainedAudioEncoder):
    """Frozen members side by side: pooled features concatenated, each member's `mix` after them."""

    def __init__(self, info: EncoderInfo, members: list[PretrainedAudioEncoder]) -> None:
        super().__init__()
        self.info = info
        self.members = nn.ModuleList([m if m.info.sample_rate == info.sample_rate else ResampledEncoder(m, info.sample_rate)
                                      for m in members])
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
        return tuple(f"members.{k}.{'encoder.' if isinstance(m, ResampledEncoder) else ''}backbone."
                     for k, m in enumerate(self.members))

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
