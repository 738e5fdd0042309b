"""Rating distributions: a target's scale cut into bins, the Gaussian-smoothed training targets
built from listeners' ratings, and what a predicted spread says about listeners (intervals,
coverage, Gaussian NLL). numpy and the standard library only: the trainer, the torch-free runtime
and `mos eval` share it.

A distribution head predicts, per target, probabilities over `bins` equal bins of [low, high].
Its training target is the listeners' ratings, each smoothed by a Gaussian of `width` (default
one bin) and averaged; a clip with only a mean gets one Gaussian around the mean whose spread is
the listener spread (`spread`) with the smoothing added. The predicted spread reported to users is
the listener spread: the smoothing is taken out again (sqrt(max(var - width^2, 0))).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def bin_centers(low: float, high: float, bins: int) -> np.ndarray:
    """The centres of `bins` equal bins of [low, high]."""
    step = (high - low) / bins
    return low + step * (np.arange(bins, dtype=np.float64) + 0.5)


def default_width(low: float, high: float, bins: int) -> float:
    """The smoothing width when none is given: one bin."""
    return (high - low) / bins


def smoothed_target(centers: np.ndarray, width: float, ratings: Sequence[float] = (),
                    mean: float | None = None, spread: float = 0.0) -> np.ndarray:
    """The training distribution over the bins: the mean over listeners of a Gaussian of `width`
    around each rating (each normalised over the bins), or, without ratings, one Gaussian around
    `mean` of sqrt(width^2 + spread^2)."""
    if len(ratings):
        centres = np.asarray(ratings, dtype=np.float64)[:, None]
        sigma = np.full((len(ratings), 1), width)
    elif mean is not None:
        centres = np.array([[mean]], dtype=np.float64)
        sigma = np.array([[np.hypot(width, spread)]])
    else:
        raise ValueError("a smoothed target needs ratings or a mean")
    density = np.exp(-0.5 * ((centers[None, :] - centres) / sigma) ** 2)
    density /= density.sum(axis=1, keepdims=True)
    return density.mean(axis=0)


def listener_spread(ratings_per_clip: Sequence[Sequence[float]]) -> float:
    """The pooled within-clip standard deviation of listeners' ratings (0 when no clip has two)."""
    sq, dof = 0.0, 0
    for ratings in ratings_per_clip:
        r = np.asarray(ratings, dtype=np.float64)
        if r.size >= 2:
            sq += float(((r - r.mean()) ** 2).sum())
            dof += r.size - 1
    return float(np.sqrt(sq / dof)) if dof else 0.0


def moments(probs: np.ndarray, centers: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, listener spread) of distributions [..., bins]: the spread with the smoothing removed."""
    mean = (probs * centers).sum(-1)
    var = (probs * (centers - mean[..., None]) ** 2).sum(-1)
    return mean, np.sqrt(np.maximum(var - width * width, 0.0))


def mixture(means: np.ndarray, stds: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of a weighted mixture (a long clip's windows): rows are components."""
    w = np.asarray(weights, dtype=np.float64)[:, None]
    m = np.asarray(means, dtype=np.float64)
    mean = (m * w).sum(axis=0) / w.sum()  # the runtime's weighted_mean, to the last bit
    second = ((np.asarray(stds, dtype=np.float64) ** 2 + m * m) * w).sum(axis=0) / w.sum()
    return mean, np.sqrt(np.maximum(second - mean * mean, 0.0))


def quantile(mean: np.ndarray | float, spread: np.ndarray | float, q: float, low: float, high: float) -> np.ndarray:
    """The q-quantile of Normal(mean, spread), clipped to [low, high] (a zero spread gives the mean)."""
    z = NormalDist().inv_cdf(q)
    return np.clip(np.asarray(mean, dtype=np.float64) + z * np.asarray(spread, dtype=np.float64), low, high)


def spread_column(target: str) -> str:
    """The output (graph and file) that holds a target's listener spread: `score_std`."""
    return f"{target}_std"


def quantile_column(target: str, q: float) -> str:
    """The output column of a quantile: `score_q10` for the 10th percentile."""
    return f"{target}_q{round(q * 100):02d}"


def parse_quantiles(text: str) -> list[float]:
    """'0.1,0.9' -> [0.1, 0.9]; ValueError unless every value lies strictly between 0 and 1."""
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or any(not 0 < v < 1 for v in values):
        raise ValueError(f"expected comma-separated probabilities between 0 and 1, e.g. 0.1,0.9 (got {text!r})")
    return values


@dataclass
class Calibration:
    """How well predicted spreads describe listeners: `coverage50`/`coverage90` (the share of single
    listener ratings inside the central 50% / 90% interval of Normal(prediction, spread); nominal
    0.5 / 0.9), `nll` (mean Gaussian negative log-likelihood of those ratings), `spread_lcc` (Pearson
    correlation of predicted spread with each clip's observed listener standard deviation), and
    the counts they come from."""

    coverage50: float
    coverage90: float
    nll: float
    spread_lcc: float | None
    clips: int
    ratings: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"coverage50": self.coverage50, "coverage90": self.coverage90, "nll": self.nll,
                "spread_lcc": self.spread_lcc, "clips": self.clips, "ratings": self.ratings}


def calibration(means: Sequence[float], spreads: Sequence[float], ratings: Sequence[Sequence[float]],
                floor: float = 1e-3) -> Calibration:
    """Calibration of predictions (mean, spread per clip) against each clip's listener ratings;
    spreads below `floor` count as `floor` in the NLL (a zero spread would make it infinite)."""
    inside50 = inside90 = total = 0
    nll = 0.0
    z50, z90 = NormalDist().inv_cdf(0.75), NormalDist().inv_cdf(0.95)
    predicted, observed = [], []
    for m, s, r in zip(means, spreads, ratings):
        r = np.asarray(r, dtype=np.float64)
        if r.size == 0:
            continue
        dev = np.abs(r - m)
        inside50 += int((dev <= z50 * s).sum())
        inside90 += int((dev <= z90 * s).sum())
        sd = max(float(s), floor)
        nll += float((0.5 * ((r - m) / sd) ** 2 + np.log(sd) + 0.5 * np.log(2 * np.pi)).sum())
        total += r.size
        if r.size >= 2:
            predicted.append(float(s))
            observed.append(float(r.std(ddof=1)))
    if total == 0:
        raise ValueError("no listener ratings to calibrate against")
    lcc = None
    if len(predicted) >= 3 and np.std(predicted) > 0 and np.std(observed) > 0:
        lcc = float(np.corrcoef(predicted, observed)[0, 1])
    clips = sum(1 for r in ratings if len(r))
    return Calibration(inside50 / total, inside90 / total, nll / total, lcc, clips, total)
