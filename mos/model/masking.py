"""Length-mask helpers shared by the encoders, fusion and pooling (padding invariance)."""

from __future__ import annotations

import torch


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Boolean [B, size]: True at valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of x [B, T, D], counting only the first `lengths` steps."""
    mask = length_mask(lengths, x.shape[1]).to(x.dtype).unsqueeze(-1)
    total = (x * mask).sum(dim=1)
    return total / lengths.clamp(min=1).to(x.dtype).unsqueeze(-1)
