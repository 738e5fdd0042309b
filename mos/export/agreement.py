"""The int8 rule: how well a quantized variant's outputs agree with fp32's on held-out clips.

Shared by audio.int8.onnx and text.int8.onnx. The agreement is label-free, so it judges any model
(a pretrained encoder's too) on every validation clip, for every output `mos score` writes: each
target's score and, for a distribution model, its `<target>_std` and the GATE_QUANTILES. Where
the clips have ratings, the validation SRCC of fp32 and of the variant is compared as well. One
budget, MAX_SRCC_DROP, sets every threshold:

- rank agreement, Spearman(fp32, variant) >= 1 - MAX_SRCC_DROP: the variant's rank changes pass
  on to the SRCC against any ratings (an expected loss of about SRCC x (1 - agreement));
- error relative to the spread, RMS(variant - fp32) <= MAX_RELATIVE_ERROR x SD(fp32 output over
  the clips): a random error of that size lowers the correlation of the output with anything by
  the factor 1 / sqrt(1 + MAX_RELATIVE_ERROR^2) = 1 - MAX_SRCC_DROP; a constant shift of that
  size moves every score by that fraction of how much the scores differ between clips;
- the validation SRCC drop, fp32 - variant, <= MAX_SRCC_DROP.

Spearman and SRCC move in steps on few clips (one swapped pair of near-equal predictions costs
12 / (n^3 - n): 0.036 on 7 clips), so those two are judged against their sampling noise: a rule
fails only when the one-sided CONFIDENCE bound of a paired bootstrap over the clips (BOOTSTRAP
resamples, seeded) lies past its threshold. The relative error is a continuous measure and is
judged as measured. Measured on the calibration clips themselves (no held-out clips) or on fewer
than MIN_CLIPS clips, nothing is judged and the rule fails: `mos export --force` overrides that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.stats import rankdata

from mos.bundle import Bundle
from mos.metrics import compute_metrics
from mos.runtime.engine import EngineOptions

MAX_SRCC_DROP = 0.01
MIN_RANK_AGREEMENT = 1.0 - MAX_SRCC_DROP
MAX_RELATIVE_ERROR = math.sqrt(1.0 / (1.0 - MAX_SRCC_DROP) ** 2 - 1.0)  # 0.1425
CONFIDENCE = 0.95
BOOTSTRAP = 2000
SEED = 0
MIN_CLIPS = 3
# The quantiles of a distribution model that the rule judges (as `mos score --quantiles 0.1,0.9`).
GATE_QUANTILES = (0.1, 0.9)
_RESAMPLE_VALUES = 2_000_000  # resamples x clips held at once by the bootstrap


def gate_options(bundle: Bundle, options: EngineOptions) -> EngineOptions:
    """`options` with the quantiles the rule judges for a distribution model (none otherwise):
    an engine made with them scores every output the rule compares (`ScoreEngine.columns`)."""
    return replace(options, quantiles=GATE_QUANTILES if bundle.predicts_spread else ())


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho (average ranks) of each row of x [B, n] with the same row of y; NaN where
    either row is constant."""
    rx = rankdata(x, axis=1)
    ry = rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def _bootstrap(n: int, statistic: Callable[..., np.ndarray], *columns: np.ndarray) -> np.ndarray:
    """`statistic` of each of BOOTSTRAP paired resamples of the n clips (rows drawn with
    replacement, the same rows for every column), in chunks that bound the memory."""
    rng = np.random.default_rng(SEED)
    chunk = max(1, _RESAMPLE_VALUES // max(n, 1))
    out = []
    for start in range(0, BOOTSTRAP, chunk):
        idx = rng.integers(0, n, (min(chunk, BOOTSTRAP - start), n))
        out.append(statistic(*(c[idx] for c in columns)))
    return np.concatenate(out)


@dataclass
class OutputAgreement:
    """One output of the variant against fp32's over the clips."""

    spearman: float  # Spearman fp32 vs variant (NaN when either is constant)
    spearman_bound: float  # its upper one-sided CONFIDENCE bound (paired bootstrap)
    rms: float  # RMS(variant - fp32)
    mae: float
    max_abs: float
    shift: float  # mean(variant - fp32): the constant part of the error
    sd: float  # standard deviation of fp32's output over the clips

    @property
    def relative_error(self) -> float:
        """RMS(variant - fp32) / SD(fp32): inf when fp32's output is constant and the variant's is not."""
        if self.sd > 0:
            return self.rms / self.sd
        return 0.0 if self.rms == 0 else math.inf

    def failures(self, name: str, clips: int) -> list[str]:
        out = []
        if self.relative_error > MAX_RELATIVE_ERROR:
            size = (f" = {self.relative_error:.3f} x its SD {self.sd:.3g} over {clips} clips" if self.sd > 0
                    else f" over {clips} clips, on which fp32's is constant")
            out.append(f"'{name}' moves by RMS {self.rms:.3g}{size} (shift {self.shift:+.3g}), more than "
                       f"{MAX_RELATIVE_ERROR:.2f} x SD")
        if math.isfinite(self.spearman_bound) and self.spearman_bound < MIN_RANK_AGREEMENT:
            out.append(f"'{name}' ranks the clips differently: Spearman fp32 vs int8 {self.spearman:.4f} on {clips} "
                       f"clips (at most {self.spearman_bound:.4f} at {CONFIDENCE:.0%}), below {MIN_RANK_AGREEMENT:g}")
        return out

    def summary(self) -> dict[str, float | None]:
        return {"spearman": _round(self.spearman), "spearman_bound": _round(self.spearman_bound),
                "rms": _round(self.rms, 6), "relative_error": _round(self.relative_error),
                "shift": _round(self.shift, 6), "sd": _round(self.sd, 6), "mae": _round(self.mae, 6),
                "max_abs": _round(self.max_abs, 6)}


@dataclass
class SrccChange:
    """A target's validation SRCC with fp32 and with the variant, on the same clips."""

    fp32: float
    variant: float
    drop_bound: float  # lower one-sided CONFIDENCE bound of the drop (paired bootstrap)
    clips: int  # the clips rated for this target

    @property
    def drop(self) -> float:
        return self.fp32 - self.variant

    def failure(self, name: str) -> str:
        if not self.drop_bound > MAX_SRCC_DROP:
            return ""
        return (f"validation SRCC of '{name}' drops {self.drop:.4f} ({self.fp32:.4f} -> {self.variant:.4f} on "
                f"{self.clips} clips; at least {self.drop_bound:.4f} at {CONFIDENCE:.0%}), more than the "
                f"{MAX_SRCC_DROP:g} allowed")

    def summary(self) -> dict[str, float | None]:
        return {"fp32": _round(self.fp32), "int8": _round(self.variant), "drop": _round(self.drop),
                "drop_bound": _round(self.drop_bound)}


def _round(x: float, digits: int = 4) -> float | None:
    return round(float(x), digits) if math.isfinite(x) else None


def srcc_changes(ref: np.ndarray, got: np.ndarray, ratings: np.ndarray, targets: Sequence[str]) -> dict[str, SrccChange]:
    """Per target (the first len(targets) columns of ref/got): validation SRCC of fp32 and of the
    variant against `ratings` [n, targets] (NaN: the clip has no rating for it), with the
    bootstrap bound of the drop."""
    out: dict[str, SrccChange] = {}
    for j, name in enumerate(targets):
        rated = np.isfinite(np.asarray(ratings[:, j], dtype=np.float64))
        n = int(rated.sum())
        if n < 2:
            continue
        a, b, y = (np.asarray(v[rated, j], dtype=np.float64) for v in (ref, got, ratings))

        def drop(ra: np.ndarray, rb: np.ndarray, ry: np.ndarray) -> np.ndarray:
            # a constant resample has no SRCC: 0.0, the convention of compute_metrics
            return np.nan_to_num(_spearman_rows(ra, ry)) - np.nan_to_num(_spearman_rows(rb, ry))

        drops = _bootstrap(n, drop, a, b, y)
        out[name] = SrccChange(compute_metrics(a, y).srcc, compute_metrics(b, y).srcc,
                               float(np.percentile(drops, 100 * (1 - CONFIDENCE))), n)
    return out


@dataclass
class Agreement:
    """A variant against fp32 on `clips` clips: every output (label-free) and, with ratings, the
    validation SRCC per target. `held_out` False: measured on its own calibration clips."""

    outputs: dict[str, OutputAgreement]
    clips: int
    held_out: bool
    srcc: dict[str, SrccChange] = field(default_factory=dict)

    @property
    def judged(self) -> bool:
        """Whether the clips can judge the variant at all (held out, at least MIN_CLIPS)."""
        return self.held_out and self.clips >= MIN_CLIPS

    def failures(self) -> list[str]:
        """Why the rule refuses the variant, worst kind first ([] when it passes)."""
        if not self.held_out:
            return [f"no held-out validation clips to judge it on (measured on its own {self.clips} calibration clips)"]
        if self.clips < MIN_CLIPS:
            return [f"{self.clips} validation clip(s), fewer than the {MIN_CLIPS} needed to judge it"]
        out = []
        for name, a in self.outputs.items():
            out += a.failures(name, self.clips)
        out += [f for f in (s.failure(k) for k, s in self.srcc.items()) if f]
        return out

    def summary(self) -> dict[str, object]:
        """What mos.json records."""
        return {
            "measured_on": f"{self.clips} {'validation' if self.held_out else 'calibration'} clips",
            "rule": {"min_rank_agreement": MIN_RANK_AGREEMENT, "max_relative_error": round(MAX_RELATIVE_ERROR, 4),
                     "max_srcc_drop": MAX_SRCC_DROP, "confidence": CONFIDENCE, "bootstrap": BOOTSTRAP},
            "outputs": {k: a.summary() for k, a in self.outputs.items()},
        }

    def lines(self, label: str = "int8") -> list[str]:
        """Report lines: the agreement per output, then the rule."""
        where = f"{self.clips} {'validation' if self.held_out else 'calibration (not held-out)'} clips"
        out = [f"  {label} vs fp32 on {where}, label-free:"]
        for name, a in self.outputs.items():
            out.append(f"    '{name}': Spearman {a.spearman:.4f} (upper 95% bound {a.spearman_bound:.4f}), RMS {a.rms:.3g} = "
                       f"{a.relative_error:.3f} x SD {a.sd:.3g} (shift {a.shift:+.3g}, MAE {a.mae:.3g}, "
                       f"max {a.max_abs:.3g})")
        out.append(f"  rule: Spearman >= {MIN_RANK_AGREEMENT:g} and validation SRCC drop <= {MAX_SRCC_DROP:g}, each "
                   f"unless refuted at {CONFIDENCE:.0%} (bootstrap over clips); RMS <= {MAX_RELATIVE_ERROR:.2f} x SD")
        return out


def measure(ref: np.ndarray, got: np.ndarray, columns: Sequence[str], held_out: bool,
            ratings: np.ndarray | None = None, targets: Sequence[str] = ()) -> Agreement:
    """The variant's outputs `got` [n, columns] against fp32's `ref` on the same clips; with
    `ratings` [n, targets], the validation SRCC per target (the first len(targets) columns)."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    n = len(ref)
    outputs: dict[str, OutputAgreement] = {}
    for j, name in enumerate(columns):
        a, b = ref[:, j], got[:, j]
        diff = b - a
        if n >= 2:
            rho = float(_spearman_rows(a[None], b[None])[0])
            boot = _bootstrap(n, _spearman_rows, a, b)
            bound = float(np.nanpercentile(boot, 100 * CONFIDENCE)) if np.isfinite(boot).any() else math.nan
            sd = float(a.std(ddof=1))
        else:
            rho = bound = sd = math.nan
        outputs[name] = OutputAgreement(
            spearman=rho, spearman_bound=bound, rms=float(np.sqrt((diff * diff).mean())) if n else math.nan,
            mae=float(np.abs(diff).mean()) if n else math.nan, max_abs=float(np.abs(diff).max()) if n else math.nan,
            shift=float(diff.mean()) if n else math.nan, sd=sd)
    srcc = srcc_changes(ref, got, np.asarray(ratings, dtype=np.float64), targets) if ratings is not None else {}
    return Agreement(outputs, n, held_out, srcc)
