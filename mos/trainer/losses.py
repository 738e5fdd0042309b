"""Training losses on normalised targets: (clipped) MSE, pairwise ranking, and 1 - LCC."""

from __future__ import annotations

import torch


def mse_loss(pred: torch.Tensor, true: torch.Tensor, clip_tau: float = 0.0) -> torch.Tensor:
    """Mean squared error; with clip_tau > 0, errors smaller than tau are not penalised."""
    err = (pred - true).abs()
    if clip_tau > 0:
        err = torch.where(err > clip_tau, err, torch.zeros_like(err))
    return (err * err).mean()


def ranking_loss(pred: torch.Tensor, true: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Pairwise hinge: for every pair whose true scores differ, the predicted order must agree
    by at least `margin` (a differentiable stand-in for SRCC)."""
    dp = pred[:, None] - pred[None, :]
    dt = true[:, None] - true[None, :]
    sign = torch.sign(dt)
    valid = (dt.abs() > 1e-6).to(pred.dtype)
    hinge = torch.relu(margin - sign * dp) * valid
    return hinge.sum() / valid.sum().clamp(min=1.0)


def correlation_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 - Pearson correlation over the batch (0 when the batch has fewer than 2 items)."""
    if pred.shape[0] < 2:
        return pred.sum() * 0.0
    p = pred - pred.mean()
    t = true - true.mean()
    lcc = (p * t).sum() / (p.norm() * t.norm() + 1e-8)
    return 1.0 - lcc


def combined_loss(
    pred: torch.Tensor,
    true: torch.Tensor,
    mse_weight: float,
    rank_weight: float,
    corr_weight: float,
    clip_tau: float = 0.0,
    rank_margin: float = 0.1,
) -> torch.Tensor:
    """Weighted sum over targets (columns of pred/true [B, n_targets])."""
    total = pred.sum() * 0.0
    for j in range(pred.shape[1]):
        p, t = pred[:, j], true[:, j]
        if mse_weight:
            total = total + mse_weight * mse_loss(p, t, clip_tau)
        if rank_weight:
            total = total + rank_weight * ranking_loss(p, t, rank_margin)
        if corr_weight:
            total = total + corr_weight * correlation_loss(p, t)
    return total / pred.shape[1]
