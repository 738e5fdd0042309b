"""Training losses on normalised targets (z-scored, or the raw scores): a pointwise loss
((clipped) MSE or L1), pairwise ranking, 1 - LCC and ListNet top-1, per target, then averaged or
summed over the targets; the KL divergence of a distribution head; and for `mos distill` soft
rank agreement with a teacher; `training_loss`, the run's combination of them (TrainConfig)."""

from __future__ import annotations

import torch

from mos.trainer.config import TrainConfig


def mse_loss(pred: torch.Tensor, true: torch.Tensor, clip_tau: float = 0.0) -> torch.Tensor:
    """Mean squared error; with clip_tau > 0, errors smaller than tau are not penalised."""
    err = (pred - true).abs()
    if clip_tau > 0:
        err = torch.where(err > clip_tau, err, torch.zeros_like(err))
    return (err * err).mean()


def l1_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (the MusicEval baseline's loss)."""
    return (pred - true).abs().mean()


REDUCTIONS = ("mean", "sum")


def over_targets(per_target: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-target losses [T] -> one loss: their mean, or their sum."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r}: expected one of {REDUCTIONS}")
    return per_target.sum() if reduction == "sum" else per_target.mean()


def distribution_loss(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(target || softmax(logits)) over the bins [B, T, bins], averaged over clips, then
    averaged (or summed, `reduction`) over targets."""
    log_q = torch.log_softmax(logits.float(), dim=-1)
    kl = torch.where(target > 0, target * (torch.log(target.clamp_min(1e-30)) - log_q), torch.zeros_like(log_q))
    return over_targets(kl.sum(-1).mean(0), reduction)


# ListNet's temperature, on normalised targets (unit variance over the training set): the batch's
# true scores become softmax(true / T), the predictions log_softmax(pred / T).
LISTNET_TEMPERATURE = 1.0


def listnet_loss(pred: torch.Tensor, true: torch.Tensor, temperature: float = LISTNET_TEMPERATURE) -> torch.Tensor:
    """ListNet top-1: the cross-entropy between the batch's top-1 probabilities under the true
    scores, softmax(true / T), and under the predictions, log_softmax(pred / T). Its minimum is
    the entropy of the true distribution (reached when pred equals true up to a constant)."""
    target = torch.softmax(true / temperature, dim=0)
    return -(target * torch.log_softmax(pred / temperature, dim=0)).sum()


def ranking_loss(pred: torch.Tensor, true: torch.Tensor, margin: float = 0.1, block: int = 2048) -> torch.Tensor:
    """Pairwise hinge: for every pair whose true scores differ, the predicted order must agree
    by at least `margin` (a differentiable stand-in for SRCC). Pairs are formed `block` rows at
    a time, so a whole validation set needs block x N memory, not N x N."""
    total, count = pred.sum() * 0.0, pred.new_zeros(())
    for start in range(0, pred.shape[0], block):
        dp = pred[start:start + block, None] - pred[None, :]
        dt = true[start:start + block, None] - true[None, :]
        valid = (dt.abs() > 1e-6).to(pred.dtype)
        total = total + (torch.relu(margin - torch.sign(dt) * dp) * valid).sum()
        count = count + valid.sum()
    return total / count.clamp(min=1.0)


def correlation_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 - Pearson correlation over the batch (0 when the batch has fewer than 2 items)."""
    if pred.shape[0] < 2:
        return pred.sum() * 0.0
    p = pred - pred.mean()
    t = true - true.mean()
    lcc = (p * t).sum() / (p.norm() * t.norm() + 1e-8)
    return 1.0 - lcc


# The agreement loss's temperature, on normalised scores: a teacher gap of this size between two
# clips means about 73% confidence in their order.
AGREEMENT_TEMPERATURE = 0.25


def rank_agreement_loss(pred: torch.Tensor, teacher: torch.Tensor,
                        temperature: float = AGREEMENT_TEMPERATURE) -> torch.Tensor:
    """Soft pairwise rank agreement with a teacher (RankNet-style distillation): for every pair
    of the batch, the cross-entropy between the teacher's order probability
    sigmoid((t_i - t_j) / T) and the student's, sigmoid((s_i - s_j) / T). Unlike the hinge of
    `ranking_loss` it also learns how sure the teacher is of each order. Its minimum (the
    teacher's own entropy) is reached when pred equals teacher up to a constant."""
    if pred.shape[0] < 2:
        return pred.sum() * 0.0
    ds = (pred[:, None] - pred[None, :]) / temperature
    target = torch.sigmoid((teacher[:, None] - teacher[None, :]) / temperature)
    ce = -(target * torch.nn.functional.logsigmoid(ds) + (1 - target) * torch.nn.functional.logsigmoid(-ds))
    off_diagonal = 1.0 - torch.eye(pred.shape[0], dtype=pred.dtype, device=pred.device)
    return (ce * off_diagonal).sum() / off_diagonal.sum()


POINTWISE = ("mse", "l1")


def combined_loss(
    pred: torch.Tensor,
    true: torch.Tensor,
    mse_weight: float,
    rank_weight: float,
    corr_weight: float,
    clip_tau: float = 0.0,
    rank_margin: float = 0.1,
    pointwise: str = "mse",
    listnet_weight: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Weighted sum per target (columns of pred/true [B, n_targets]), then averaged over the
    targets, or summed (`reduction` "sum"); `mse_weight` weighs the `pointwise` loss ("mse":
    (clipped) MSE, "l1": mean absolute error)."""
    if pointwise not in POINTWISE:
        raise ValueError(f"pointwise loss {pointwise!r}: expected one of {POINTWISE}")
    per_target = []
    for j in range(pred.shape[1]):
        p, t = pred[:, j], true[:, j]
        total = pred.sum() * 0.0
        if mse_weight:
            point = mse_loss(p, t, clip_tau) if pointwise == "mse" else l1_loss(p, t)
            total = total + mse_weight * point
        if rank_weight:
            total = total + rank_weight * ranking_loss(p, t, rank_margin)
        if corr_weight:
            total = total + corr_weight * correlation_loss(p, t)
        if listnet_weight:
            total = total + listnet_weight * listnet_loss(p, t)
        per_target.append(total)
    return over_targets(torch.stack(per_target), reduction)


def training_loss(pred: torch.Tensor, true: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The run's loss on normalised predictions and targets [B, n_targets] (averaged or summed
    over the targets, --loss-reduction)."""
    return combined_loss(pred, true, cfg.mse_weight, cfg.rank_weight, cfg.corr_weight, cfg.clip_tau, cfg.rank_margin,
                         cfg.loss, cfg.listnet_weight, cfg.loss_reduction)
