"""Audio encoders behind one interface: features [B, M, T] + frame lengths -> frames [B, T', D].

The built-in edge encoder is a stack of masked 1-D convolutions: every conv input is zeroed past
its length, lengths follow floor((n + 2p - k) / s) + 1 through each stride, and normalisation is
per frame (LayerNorm over channels), so padded frames never leak into valid ones.
"""

from __future__ import annotations

import torch
from torch import nn

from mos.model.config import ModelConfig
from mos.model.masking import length_mask


class AudioEncoder(nn.Module):
    """Interface: `out_dim` and forward(features, frame_lengths) -> (frames [B, T', D], lengths)."""

    out_dim: int


class MaskedConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.kernel, self.stride, self.pad = kernel, stride, kernel // 2
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=self.pad)
        self.norm = nn.LayerNorm(c_out)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1, stride=stride) if (c_in != c_out or stride != 1) else None

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + 2 * self.pad - self.kernel, self.stride, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * length_mask(lengths, x.shape[2]).unsqueeze(1).to(x.dtype)
        y = self.conv(x)
        y = self.drop(self.act(self.norm(y.transpose(1, 2)).transpose(1, 2)))
        if self.skip is not None:
            res = self.skip(x)
            y = y + res[:, :, : y.shape[2]]
        else:
            y = y + x
        return y, self.out_lengths(lengths)


class ConvAudioEncoder(AudioEncoder):
    """The small built-in encoder (about 1 M parameters), trained from scratch."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        blocks = []
        c_in = cfg.n_mels
        for c_out, stride in zip(cfg.channels, cfg.strides):
            blocks.append(MaskedConvBlock(c_in, c_out, cfg.kernel_size, stride, cfg.dropout))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = c_in

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats
        for block in self.blocks:
            x, lengths = block(x, lengths)
        x = x * length_mask(lengths, x.shape[2]).unsqueeze(1).to(x.dtype)
        return x.transpose(1, 2), lengths
