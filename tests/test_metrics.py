"""Tests for mos.metrics against hand-computed values."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from mos.metrics import Metrics, compute_metrics, evaluate_levels, system_level


def _average_ranks(x: list[float]) -> list[float]:
    """1-based ranks, ties get the mean of the ranks they span (written out without scipy)."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    vx = sum((a - mx) ** 2 for a in x)
    vy = sum((b - my) ** 2 for b in y)
    return cov / math.sqrt(vx * vy)


def _tau_b(x: list[float], y: list[float]) -> float:
    conc = disc = tie_x = tie_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tie_x += 1
        elif dy == 0:
            tie_y += 1
        elif dx * dy > 0:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / math.sqrt((conc + disc + tie_x) * (conc + disc + tie_y))


def test_perfect_and_reversed_ranking() -> None:
    up = compute_metrics([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert up.lcc == pytest.approx(1.0)
    assert up.srcc == pytest.approx(1.0)
    assert up.ktau == pytest.approx(1.0)
    assert up.mse == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert up.n == 4
    down = compute_metrics([4.0, 3.0, 2.0, 1.0], [1.0, 5.0, 7.0, 9.0])
    assert down.srcc == pytest.approx(-1.0)
    assert down.ktau == pytest.approx(-1.0)
    assert down.lcc < 0


def test_mse_and_lcc_by_hand() -> None:
    m = compute_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m.mse == pytest.approx(4 / 3)
    # deviations (-1, 0, 1) and (-5/3, -2/3, 7/3): cov 4, |x| sqrt(2), |y| sqrt(78)/3
    assert m.lcc == pytest.approx(12 / math.sqrt(156))
    assert isinstance(m, Metrics)
    assert m.as_dict() == {"mse": m.mse, "lcc": m.lcc, "srcc": m.srcc, "ktau": m.ktau, "n": 3}


def test_kendall_tau_b_with_ties_by_hand() -> None:
    # pairs: (0,1) tie in true, (1,2) tie in pred, four concordant -> 4 / sqrt(5 * 5)
    assert compute_metrics([1, 2, 2, 3], [1, 1, 2, 3]).ktau == pytest.approx(0.8)
    # pairs: 3 discordant, 1 concordant, one tie on each side -> (1 - 3) / sqrt(5 * 5)
    assert compute_metrics([3, 1, 2, 2], [1, 2, 2, 3]).ktau == pytest.approx(-0.4)


def test_ties_use_average_ranks() -> None:
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, size=40).astype(float).tolist()
    true = rng.integers(0, 4, size=40).astype(float).tolist()
    m = compute_metrics(pred, true)
    assert m.srcc == pytest.approx(_pearson(_average_ranks(pred), _average_ranks(true)))
    assert m.ktau == pytest.approx(_tau_b(pred, true))
    assert m.lcc == pytest.approx(_pearson(pred, true))
    assert m.mse == pytest.approx(sum((a - b) ** 2 for a, b in zip(pred, true)) / 40)


def test_constant_or_tiny_input_gives_zero_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = compute_metrics([3.0, 3.0, 3.0], [1.0, 2.0, 3.0])
        assert (flat.lcc, flat.srcc, flat.ktau) == (0.0, 0.0, 0.0)
        assert flat.mse == pytest.approx((4 + 1 + 0) / 3)
        flat_true = compute_metrics([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
        assert (flat_true.lcc, flat_true.srcc, flat_true.ktau) == (0.0, 0.0, 0.0)
        one = compute_metrics([1.0], [2.0])
        assert (one.lcc, one.srcc, one.ktau, one.mse, one.n) == (0.0, 0.0, 0.0, 1.0, 1)
        near = compute_metrics([1.0, 1.0 + 1e-15, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])
        assert all(np.isfinite([near.lcc, near.srcc, near.ktau]))


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="length"):
        compute_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        compute_metrics([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        compute_metrics([1.0, 2.0], [float("nan"), 2.0])
    with pytest.raises(ValueError, match="empty"):
        compute_metrics([], [])
    with pytest.raises(ValueError, match="1-D"):
        compute_metrics([[1.0, 2.0]], [[1.0, 2.0]])


def test_system_level_by_hand() -> None:
    systems = ["B", "A", "B", "A", "C"]
    pred = [1.0, 2.0, 3.0, 4.0, 5.0]
    true = [2.0, 2.0, 4.0, 6.0, 1.0]
    sys_pred, sys_true, names = system_level(pred, true, systems)
    assert names == ["A", "B", "C"]
    np.testing.assert_allclose(sys_pred, [3.0, 2.0, 5.0])
    np.testing.assert_allclose(sys_true, [4.0, 3.0, 1.0])
    with pytest.raises(ValueError, match="length"):
        system_level(pred, true, systems[:-1])


def test_evaluate_levels() -> None:
    systems = ["B", "A", "B", "A", "C"]
    pred = [1.0, 2.0, 3.0, 4.0, 5.0]
    true = [2.0, 2.0, 4.0, 6.0, 1.0]
    levels = evaluate_levels(pred, true, systems)
    assert set(levels) == {"utterance", "system"}
    assert levels["utterance"] == compute_metrics(pred, true)
    assert levels["system"] == compute_metrics([3.0, 2.0, 5.0], [4.0, 3.0, 1.0])
    assert levels["system"].n == 3
    assert set(evaluate_levels(pred, true)) == {"utterance"}
    assert set(evaluate_levels(pred, true, ["A", None, "B", "A", "C"])) == {"utterance"}
