"""Utterance- and system-level MSE/LCC/SRCC/KTAU, computed the way the XACLE and AudioMOS scorers do."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = ["Metrics", "compute_metrics", "system_level", "evaluate_levels", "bootstrap_levels"]


@dataclass(frozen=True)
class Metrics:
    """Mean squared error and the three correlations between predictions and ratings over `n` points."""

    mse: float
    lcc: float
    srcc: float
    ktau: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _as_vector(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} holds a non-finite value ({arr[bad]}) at index {bad}")
    return arr


def _finite_or_zero(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else 0.0


def compute_metrics(pred: Sequence[float] | np.ndarray, true: Sequence[float] | np.ndarray) -> Metrics:
    """MSE, Pearson LCC, Spearman SRCC (average ranks) and Kendall tau-b of `pred` against `true`.

    When either side is constant or there are fewer than two points, the correlations are 0.0
    (the XACLE scorer's convention) rather than NaN, and no scipy warning is raised.
    """
    p = _as_vector(pred, "pred")
    t = _as_vector(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in length ({p.size} vs {t.size})")
    n = int(p.size)
    if n == 0:
        raise ValueError("pred and true are empty")
    mse = float(np.mean((p - t) ** 2))
    if n < 2 or np.ptp(p) == 0.0 or np.ptp(t) == 0.0:
        return Metrics(mse=mse, lcc=0.0, srcc=0.0, ktau=0.0, n=n)
    with warnings.catch_warnings():
        # Near-constant inputs can still warn or give NaN; the convention above covers them too.
        warnings.simplefilter("ignore")
        lcc = _finite_or_zero(stats.pearsonr(p, t)[0])
        srcc = _finite_or_zero(stats.spearmanr(p, t)[0])
        ktau = _finite_or_zero(stats.kendalltau(p, t)[0])
    return Metrics(mse=mse, lcc=lcc, srcc=srcc, ktau=ktau, n=n)


def system_level(
    pred: Sequence[float] | np.ndarray,
    true: Sequence[float] | np.ndarray,
    systems: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per system (sorted by name): the mean prediction and the mean rating of its clips."""
    p = _as_vector(pred, "pred")
    t = _as_vector(true, "true")
    if not (p.size == t.size == len(systems)):
        raise ValueError(f"pred, true and systems differ in length ({p.size}, {t.size}, {len(systems)})")
    if any(s is None for s in systems):
        raise ValueError("systems holds None: every clip needs a system for system-level metrics")
    names = sorted(set(systems))
    index = {name: i for i, name in enumerate(names)}
    codes = np.fromiter((index[s] for s in systems), dtype=np.int64, count=len(systems))
    counts = np.bincount(codes, minlength=len(names)).astype(np.float64)
    sys_pred = np.bincount(codes, weights=p, minlength=len(names)) / counts
    sys_true = np.bincount(codes, weights=t, minlength=len(names)) / counts
    return sys_pred, sys_true, names


def evaluate_levels(
    pred: Sequence[float] | np.ndarray,
    true: Sequence[float] | np.ndarray,
    systems: Sequence[str | None] | None = None,
) -> dict[str, Metrics]:
    """Metrics at "utterance" level, plus "system" level when every clip has a system."""
    results = {"utterance": compute_metrics(pred, true)}
    if systems is not None:
        if len(systems) != results["utterance"].n:
            raise ValueError(f"systems has {len(systems)} entries for {results['utterance'].n} clips")
        if all(s is not None for s in systems):
            sys_pred, sys_true, _ = system_level(pred, true, systems)  # type: ignore[arg-type]
            results["system"] = compute_metrics(sys_pred, sys_true)
    return results


def bootstrap_levels(
    pred: Sequence[float] | np.ndarray,
    true: Sequence[float] | np.ndarray,
    groups: Sequence[str],
    systems: Sequence[str | None] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, list[float]]]:
    """Percentile intervals of each metric of `evaluate_levels`, resampling whole groups.

    Each resample draws as many groups as there are, with replacement, and keeps every clip of
    each drawn group, so clips that share a source (an utterance, a speaker) move together and the
    interval reflects how few independent groups there are, not how many clips. Returns
    level -> metric -> [low, high] (metrics mse, lcc, srcc, ktau).
    """
    p = _as_vector(pred, "pred")
    t = _as_vector(true, "true")
    if not (p.size == t.size == len(groups)):
        raise ValueError(f"pred, true and groups differ in length ({p.size}, {t.size}, {len(groups)})")
    names = sorted(set(groups))
    members = {g: [] for g in names}
    for i, g in enumerate(groups):
        members[g].append(i)
    index = [np.array(members[g], dtype=np.int64) for g in names]
    use_systems = systems is not None and all(s is not None for s in systems)
    sys_arr = np.array(systems, dtype=object) if use_systems else None
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[float]]] = {}
    for _ in range(n_resamples):
        idx = np.concatenate([index[k] for k in rng.integers(0, len(names), len(names))])
        levels = evaluate_levels(p[idx], t[idx], list(sys_arr[idx]) if sys_arr is not None else None)
        for level, m in levels.items():
            for key in ("mse", "lcc", "srcc", "ktau"):
                draws.setdefault(level, {}).setdefault(key, []).append(getattr(m, key))
    tail = 100.0 * (1.0 - confidence) / 2.0
    return {level: {key: [float(np.percentile(v, tail)), float(np.percentile(v, 100.0 - tail))]
                    for key, v in by_metric.items()}
            for level, by_metric in draws.items()}
