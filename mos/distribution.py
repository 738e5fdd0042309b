"""Rating distributions: a target's scale as a grid of values, the smoothed training targets built
from listeners' ratings, the mean and listener spread read back from a predicted distribution,
and what a predicted spread says about listeners (intervals, coverage, Gaussian NLL, per score
band). numpy and the standard library only: the trainer, the torch-free runtime and `mos eval`
share it.

A distribution head predicts, per target, probabilities over `bins` values of [low, high]. Two
kernels turn a listener's rating into a training distribution over them (`Grid`):

- "beta-binomial" (the default since the kernel was recorded): the values are `bins` evenly
  spaced points with both ends of the scale among them, and a rating at position
  u = (r - low) / (high - low) becomes a beta-binomial over the bins - 1 steps with mean u (the
  binomial at the narrowest width). The scale's ends censor: a rating at an end is all mass on
  that end point (a clip every listener rated 5 has the target "5" exactly), and the smoothing
  narrows towards the ends as sqrt((r - low)(high - r)), its width being its standard deviation
  mid-scale. Its mean is the rating exactly and its variance kappa (r - low)(high - r), both
  linear in (1, r, r^2), so a clip's target (the mean over listeners) reads back the listeners'
  mean and population standard deviation exactly: mean = p.x, and the listener variance
  (var(p) - kappa (mean - low)(high - mean)) / (1 - kappa). (A Gaussian folded or reflected at
  the ends has a mean and variance non-linear in r, so a mix of listeners could not be read back
  exactly; a kernel that can must vanish at the ends, and on these points none is narrower than
  the binomial, kappa = 1 / (bins - 1).)
- "gaussian" (checkpoints from before the kernel was recorded): the values are the bins' centres
  and a rating a Gaussian of `width` (default one bin) at them, renormalised over the bins; the
  spread reads back as sqrt(var - width^2). Biased at the ends of the scale (kept so that old
  checkpoints train and read back as they did).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


BETA_BINOMIAL = "beta-binomial"
GAUSSIAN = "gaussian"
KERNELS = (BETA_BINOMIAL, GAUSSIAN)


def bin_centers(low: float, high: float, bins: int) -> np.ndarray:
    """The centres of `bins` equal bins of [low, high] (the "gaussian" kernel's values)."""
    step = (high - low) / bins
    return low + step * (np.arange(bins, dtype=np.float64) + 0.5)


def grid_points(low: float, high: float, bins: int) -> np.ndarray:
    """`bins` evenly spaced points of [low, high], both ends included (the "beta-binomial" values)."""
    return np.linspace(float(low), float(high), int(bins), dtype=np.float64)


def min_width(low: float, high: float, bins: int) -> float:
    """The narrowest beta-binomial smoothing (the binomial kernel): its SD mid-scale,
    (high - low) / (2 sqrt(bins - 1))."""
    return (high - low) / (2.0 * np.sqrt(bins - 1))


def _beta_binomial(u: np.ndarray, n: int, t: float) -> np.ndarray:
    """[len(u), n + 1]: BetaBinomial(n, alpha = u / t, beta = (1 - u) / t) for each position u in
    [0, 1] (t = 0: Binomial(n, u)); u = 0 or 1 is all mass on that end."""
    u = np.asarray(u, dtype=np.float64)[:, None]
    j = np.arange(n, dtype=np.float64)[None, :] * t
    with np.errstate(divide="ignore"):
        rise_a = np.log(u + j)  # log of alpha's rising factorial, term by term (times t^k, which cancels)
        rise_b = np.log(1.0 - u + j)
    zero = np.zeros((u.shape[0], 1))
    a = np.concatenate([zero, np.cumsum(rise_a, axis=1)], axis=1)  # a[:, k]: k terms
    b = np.concatenate([zero, np.cumsum(rise_b, axis=1)], axis=1)[:, ::-1]  # b[:, k]: n - k terms
    k = range(n + 1)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    log_p = log_choose[None, :] + a + b
    p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _inverse_concentration(kappa: float, n: int) -> float:
    """t = 1 / (alpha + beta) of the beta-binomial over n + 1 points whose variance is
    kappa (r - low)(high - r) (kappa = 1 / n: t = 0, the binomial)."""
    return max((kappa * n - 1.0) / (n * (1.0 - kappa)), 0.0)


@dataclass(frozen=True)
class Grid:
    """One target's distribution: `bins` values of [low, high], the `kernel` ("beta-binomial" or
    "gaussian", module docstring) that smooths a rating onto them, and its `width` on the scale
    (0: the kernel's default, `smoothing`). ValueError for a width the kernel cannot have."""

    low: float
    high: float
    bins: int
    kernel: str = BETA_BINOMIAL
    width: float = 0.0

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"distribution kernel {self.kernel!r}: expected {' or '.join(KERNELS)}")
        if self.bins < 2 or not self.high > self.low:
            raise ValueError(f"a distribution needs at least 2 bins over a range low < high "
                             f"(got {self.bins} over {self.low:g}..{self.high:g})")
        if self.width < 0:
            raise ValueError(f"smoothing width {self.width:g} is negative")
        if self.kernel == BETA_BINOMIAL and self.width > 0:
            least, most = min_width(self.low, self.high, self.bins), (self.high - self.low) / 2
            if not least * (1 - 1e-9) <= self.width < most:
                raise ValueError(f"smoothing width {self.width:g} on {self.low:g}..{self.high:g} with {self.bins} bins: "
                                 f"the kernel that keeps the scale's ends exact needs at least {least:.4g} "
                                 f"(its width mid-scale; more bins allow less) and less than {most:g}")

    @property
    def smoothing(self) -> float:
        """The width in use: the given one, else one bin ("gaussian") or `min_width` ("beta-binomial")."""
        if self.width > 0:
            return float(self.width)
        if self.kernel == GAUSSIAN:
            return (self.high - self.low) / self.bins
        return float(min_width(self.low, self.high, self.bins))

    @property
    def values(self) -> np.ndarray:
        """The value on the scale that each of the `bins` probabilities stands for."""
        if self.kernel == GAUSSIAN:
            return bin_centers(self.low, self.high, self.bins)
        return grid_points(self.low, self.high, self.bins)

    @property
    def kappa(self) -> float:
        """The smoothing's variance is kappa (r - low)(high - r) (0 for "gaussian": constant)."""
        if self.kernel == GAUSSIAN:
            return 0.0
        return max(4.0 * self.smoothing ** 2 / (self.high - self.low) ** 2, 1.0 / (self.bins - 1))

    @property
    def offset(self) -> float:
        """The constant smoothing variance the read-back takes out (width^2 for "gaussian", else 0)."""
        return self.smoothing ** 2 if self.kernel == GAUSSIAN else 0.0

    def target(self, ratings: Sequence[float] = (), mean: float | None = None, spread: float = 0.0) -> np.ndarray:
        """The training distribution over the values: the mean over listeners of each rating's
        kernel, or, without ratings, one distribution around `mean` whose listener spread is
        `spread` (beta-binomial: read back exactly, capped at the most a distribution on the
        scale with that mean can have; gaussian: sqrt(width^2 + spread^2) wide)."""
        if self.kernel == GAUSSIAN:
            return self._gaussian_target(ratings, mean, spread)
        n, scale = self.bins - 1, self.high - self.low
        if len(ratings):
            u = np.clip((np.asarray(ratings, dtype=np.float64) - self.low) / scale, 0.0, 1.0)
            return _beta_binomial(u, n, _inverse_concentration(self.kappa, n)).mean(axis=0)
        if mean is None:
            raise ValueError("a smoothed target needs ratings or a mean")
        u = min(max((float(mean) - self.low) / scale, 0.0), 1.0)
        room = u * (1.0 - u) * scale * scale  # (mean - low)(high - mean): 0 at an end, a point mass there
        kappa = self.kappa + (1.0 - self.kappa) * spread * spread / room if room > 0 else self.kappa
        return _beta_binomial(np.array([u]), n, _inverse_concentration(min(kappa, 1.0 - 1e-9), n))[0]

    def _gaussian_target(self, ratings: Sequence[float], mean: float | None, spread: float) -> np.ndarray:
        width = self.smoothing
        if len(ratings):
            centres = np.asarray(ratings, dtype=np.float64)[:, None]
            sigma = np.full((len(ratings), 1), width)
        elif mean is not None:
            centres = np.array([[mean]], dtype=np.float64)
            sigma = np.array([[np.hypot(width, spread)]])
        else:
            raise ValueError("a smoothed target needs ratings or a mean")
        density = np.exp(-0.5 * ((self.values[None, :] - centres) / sigma) ** 2)
        density /= density.sum(axis=1, keepdims=True)
        return density.mean(axis=0)

    def moments(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, listener spread) of distributions [..., bins] over the values: the mean, and the
        standard deviation with the smoothing taken out (never negative). MosModel.spread is
        the same in torch."""
        x = self.values
        mean = (probs * x).sum(-1)
        var = (probs * (x - mean[..., None]) ** 2).sum(-1)
        edge = self.kappa * (mean - self.low) * (self.high - mean)
        listener = (var - edge - self.offset) / (1.0 - self.kappa)
        return mean, np.sqrt(np.maximum(listener, 0.0))


def listener_spread(ratings_per_clip: Sequence[Sequence[float]]) -> float:
    """The pooled within-clip standard deviation of listeners' ratings (0 when no clip has two)."""
    sq, dof = 0.0, 0
    for ratings in ratings_per_clip:
        r = np.asarray(ratings, dtype=np.float64)
        if r.size >= 2:
            sq += float(((r - r.mean()) ** 2).sum())
            dof += r.size - 1
    return float(np.sqrt(sq / dof)) if dof else 0.0


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
    correlation of predicted spread with each clip's observed listener standard deviation, the
    population one (ddof 0) that a clip's training target reads back), and the counts they come
    from."""

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
            observed.append(float(r.std()))
    if total == 0:
        raise ValueError("no listener ratings to calibrate against")
    lcc = None
    if len(predicted) >= 3 and np.std(predicted) > 0 and np.std(observed) > 0:
        lcc = float(np.corrcoef(predicted, observed)[0, 1])
    clips = sum(1 for r in ratings if len(r))
    return Calibration(inside50 / total, inside90 / total, nll / total, lcc, clips, total)


BANDS = ("low", "mid", "high")


def score_band(true: float, low: float, high: float) -> str:
    """The third of the scale [low, high] that a clip's true score lies in: "low" below
    low + range/3, "high" above high - range/3, else "mid" (both edges in "mid")."""
    third = (high - low) / 3.0
    if true < low + third:
        return "low"
    if true > high - third:
        return "high"
    return "mid"


@dataclass
class BandCalibration:
    """`calibration` of the clips whose true score lies in `band`, the part [low, high] of the scale."""

    band: str
    low: float
    high: float
    calibration: Calibration

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {"band": self.band, "from": self.low, "to": self.high, **self.calibration.as_dict()}


def calibration_by_band(means: Sequence[float], spreads: Sequence[float], ratings: Sequence[Sequence[float]],
                        truths: Sequence[float], low: float, high: float) -> list[BandCalibration]:
    """`calibration` per third of the scale by each clip's true score (`score_band`); bands with
    no listener rating are left out. A spread that is right on average can be wrong at the ends."""
    third = (high - low) / 3.0
    edges = {"low": (low, low + third), "mid": (low + third, high - third), "high": (high - third, high)}
    out = []
    for band in BANDS:
        keep = [k for k, t in enumerate(truths) if score_band(float(t), low, high) == band and len(ratings[k])]
        if keep:
            c = calibration([means[k] for k in keep], [spreads[k] for k in keep], [ratings[k] for k in keep])
            out.append(BandCalibration(band, *edges[band], c))
    return out
