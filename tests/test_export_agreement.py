"""The int8 rule (mos.export.agreement) on known predictions: what it keeps and what it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mos.export.agreement import MAX_RELATIVE_ERROR, MAX_SRCC_DROP, MIN_CLIPS, MIN_RANK_AGREEMENT, measure

COLUMNS = ["score", "score_std", "score_q10", "score_q90"]


def test_one_swapped_pair_of_near_equal_predictions_on_seven_clips_is_sampling_noise() -> None:
    """Seven clips rated exactly as fp32 predicts them; int8 swaps the two that fp32 puts 0.01
    apart. Spearman and SRCC fall by 12 / (7^3 - 7) = 0.036 (more than the 0.01 budget), yet a
    single swap is what any small error does to near-equal predictions: kept."""
    fp32 = np.array([[1.0], [1.5], [2.0], [2.5], [3.0], [3.5], [3.51]])
    int8 = fp32 + np.array([[0.004], [-0.003], [0.002], [0.001], [-0.004], [0.006], [-0.006]])
    agreement = measure(fp32, int8, ["score"], True, ratings=fp32, targets=["score"])
    out, change = agreement.outputs["score"], agreement.srcc["score"]
    assert out.spearman == pytest.approx(1 - 12 / (7**3 - 7)) and change.drop == pytest.approx(12 / (7**3 - 7))
    assert change.drop > MAX_SRCC_DROP and out.spearman < MIN_RANK_AGREEMENT  # what a point rule refuses
    assert out.spearman_bound == 1.0 and change.drop_bound <= 0.0 and out.relative_error < 0.01
    assert agreement.failures() == []


def test_many_clips_ranked_differently_are_refused_although_the_error_is_small_against_the_spread() -> None:
    """200 clips, most in a narrow cluster and a few far off (the spread is theirs): int8 keeps
    within 0.14 x SD but scrambles the cluster. The rank agreement refuses it; with 200 clips its
    sampling noise is small."""
    rng = np.random.default_rng(1)
    fp32 = np.concatenate([rng.normal(3.0, 0.01, 190), rng.normal(3.0, 1.0, 10)])[:, None]
    int8 = fp32 + rng.normal(0.0, 0.02, fp32.shape)
    a = measure(fp32, int8, ["score"], True).outputs["score"]
    assert a.relative_error < MAX_RELATIVE_ERROR and a.spearman_bound < MIN_RANK_AGREEMENT
    (failure,) = measure(fp32, int8, ["score"], True).failures()
    assert failure.startswith("'score' ranks the clips differently: Spearman fp32 vs int8") and "on 200 clips" in failure


def test_a_shifted_output_is_refused_on_its_error_relative_to_the_spread() -> None:
    """Ranks kept exactly, every score moved by a fifth of the scores' spread: refused, and the
    report says it is a shift."""
    fp32 = np.linspace(20.0, 80.0, 40)[:, None]
    sd = float(fp32.std(ddof=1))
    int8 = fp32 + 0.2 * sd
    agreement = measure(fp32, int8, ["mushra"], True, ratings=fp32, targets=["mushra"])
    a = agreement.outputs["mushra"]
    assert a.spearman == 1.0 and a.shift == pytest.approx(0.2 * sd) and a.relative_error == pytest.approx(0.2)
    assert agreement.srcc["mushra"].drop == 0.0
    (failure,) = agreement.failures()
    assert failure == (f"'mushra' moves by RMS {a.rms:.3g} = 0.200 x its SD {sd:.3g} over 40 clips "
                       f"(shift +{0.2 * sd:.3g}), more than 0.14 x SD")


def test_spreads_and_quantiles_are_judged_like_the_scores() -> None:
    """A distribution model's outputs: only the spread is perturbed (by half its own spread across
    clips): the rule names it, not the scores."""
    rng = np.random.default_rng(2)
    score = rng.uniform(1.0, 5.0, 60)
    std = rng.uniform(0.4, 0.9, 60)
    fp32 = np.stack([score, std, score - 1.2816 * std, score + 1.2816 * std], axis=1)
    int8 = fp32 + rng.normal(0.0, 1e-3, fp32.shape)
    assert measure(fp32, int8, COLUMNS, True).failures() == []
    int8[:, 1] += rng.normal(0.0, 0.5 * std.std(), 60)
    failures = measure(fp32, int8, COLUMNS, True).failures()
    assert failures and all(f.startswith("'score_std' ") for f in failures)
    assert any("moves by RMS" in f for f in failures)


def test_a_constant_fp32_output_that_int8_changes_is_refused() -> None:
    fp32 = np.column_stack([np.linspace(1, 5, 10), np.full(10, 0.7)])
    int8 = fp32 + np.array([0.0, 1e-3])
    a = measure(fp32, int8, ["score", "score_std"], True)
    assert a.outputs["score_std"].relative_error == math.inf and math.isnan(a.outputs["score_std"].spearman)
    (failure,) = a.failures()
    assert failure.startswith("'score_std' moves by RMS 0.001 over 10 clips, on which fp32's is constant (shift +0.001)")
    assert measure(fp32, fp32.copy(), ["score", "score_std"], True).failures() == []


def test_nothing_is_judged_on_calibration_clips_or_too_few_clips() -> None:
    fp32 = np.linspace(1, 5, 8)[:, None]
    (failure,) = measure(fp32, fp32, ["score"], False).failures()
    assert failure == "no held-out validation clips to judge it on (measured on its own 8 calibration clips)"
    few = fp32[: MIN_CLIPS - 1]
    assert measure(few, few, ["score"], True).failures() == [
        f"{MIN_CLIPS - 1} validation clip(s), fewer than the {MIN_CLIPS} needed to judge it"]


def test_validation_srcc_uses_the_clips_rated_for_each_target() -> None:
    rng = np.random.default_rng(3)
    fp32 = rng.normal(size=(30, 2))
    ratings = fp32 + rng.normal(0.0, 0.5, fp32.shape)
    ratings[::3, 1] = np.nan  # a third of the clips have no rating for the second target
    srcc = measure(fp32, fp32 + 1e-6, ["a", "b"], True, ratings, ["a", "b"]).srcc
    assert srcc["a"].clips == 30 and srcc["b"].clips == 20
    assert srcc["b"].fp32 == pytest.approx(srcc["b"].variant) and srcc["b"].fp32 > 0.5


def test_the_relative_error_bound_is_the_srcc_budget_for_a_random_error() -> None:
    """An error independent of the predictions, of RMS MAX_RELATIVE_ERROR x their SD, keeps
    1 - MAX_SRCC_DROP of their correlation with ratings (checked on 200000 simulated clips)."""
    assert 1 / math.sqrt(1 + MAX_RELATIVE_ERROR**2) == pytest.approx(1 - MAX_SRCC_DROP)
    rng = np.random.default_rng(4)
    fp32 = rng.normal(size=200_000)
    ratings = fp32 + rng.normal(size=fp32.size)
    int8 = fp32 + rng.normal(0.0, MAX_RELATIVE_ERROR, fp32.size)
    ratio = np.corrcoef(int8, ratings)[0, 1] / np.corrcoef(fp32, ratings)[0, 1]
    assert ratio == pytest.approx(1 - MAX_SRCC_DROP, abs=2e-3)
