"""Rating distributions (`mos train --distribution BINS`): the smoothed targets, the KL loss, the
spread's moments and mixtures, calibration, all by hand; then a distribution model trained,
exported (verified against PyTorch, spreads included), scored with spreads and quantiles, and
evaluated for calibration against per-listener ratings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mos.distribution import (bin_centers, calibration, listener_spread, mixture, moments, quantile,
                              smoothed_target)

E = math.exp


def test_smoothed_target_from_listener_ratings_by_hand() -> None:
    centers = bin_centers(0.0, 10.0, 5)
    assert centers.tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
    # Width 2: a Gaussian around 3 at the centres is e^-0.5, 1, e^-0.5, e^-2, e^-4.5 (normalised);
    # around 5 it is e^-2, e^-0.5, 1, e^-0.5, e^-2. The target is their mean.
    around3 = np.array([E(-0.5), 1, E(-0.5), E(-2), E(-4.5)])
    around5 = np.array([E(-2), E(-0.5), 1, E(-0.5), E(-2)])
    expected = (around3 / around3.sum() + around5 / around5.sum()) / 2
    got = smoothed_target(centers, 2.0, [3.0, 5.0])
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[1] == pytest.approx((1 / 2.35951 + 0.60653 / 2.48374) / 2, abs=1e-5)  # 0.33400
    assert got.sum() == pytest.approx(1.0)


def test_smoothed_target_from_a_mean_and_the_listener_spread() -> None:
    centers = bin_centers(0.0, 10.0, 5)
    # No ratings: one Gaussian around the mean with sigma = sqrt(width^2 + spread^2) = sqrt(4 + 2.25) = 2.5.
    dens = np.exp(-0.5 * ((centers - 6.0) / 2.5) ** 2)
    assert smoothed_target(centers, 2.0, (), mean=6.0, spread=1.5) == pytest.approx(dens / dens.sum(), abs=1e-12)
    with pytest.raises(ValueError):
        smoothed_target(centers, 2.0)


def test_listener_spread_is_the_pooled_within_clip_deviation() -> None:
    # Clip 1: 2, 4 (squares about the mean 3: 1 + 1); clip 2: 5, 6, 7 (1 + 0 + 1); one rating
    # alone adds nothing. Pooled: sqrt(4 / (1 + 2)).
    assert listener_spread([[2, 4], [5, 6, 7], [9]]) == pytest.approx(math.sqrt(4 / 3))
    assert listener_spread([[1], []]) == 0.0


def test_kl_loss_by_hand() -> None:
    torch = pytest.importorskip("torch")
    from mos.trainer.losses import distribution_loss

    target = torch.tensor([[[0.5, 0.5, 0.0]], [[1.0, 0.0, 0.0]]])
    logits = torch.zeros(2, 1, 3)  # uniform: q = 1/3 each
    # Clip 1: 2 * 0.5 * ln(0.5 / (1/3)) = ln 1.5; clip 2: ln(1 / (1/3)) = ln 3; their mean.
    assert float(distribution_loss(logits, target)) == pytest.approx((math.log(1.5) + math.log(3)) / 2, rel=1e-6)
    assert float(distribution_loss(torch.log(target.clamp_min(1e-9)) * 1.0, target)) == pytest.approx(0.0, abs=1e-6)


def test_moments_take_the_smoothing_out_and_windows_mix() -> None:
    centers = np.array([1.0, 3.0, 5.0])
    probs = np.array([0.25, 0.5, 0.25])  # mean 3, variance 0.25 * 4 * 2 = 2
    mean, spread = moments(probs, centers, width=1.0)
    assert mean == pytest.approx(3.0) and spread == pytest.approx(1.0)  # sqrt(2 - 1)
    assert moments(probs, centers, width=2.0)[1] == 0.0  # never negative
    # Two windows (weights 1 and 3): Normal(2, 1) and Normal(4, 0); mean 3.5, second moment
    # (1 * (1 + 4) + 3 * 16) / 4 = 13.25, spread sqrt(13.25 - 12.25) = 1.
    m, s = mixture(np.array([[2.0], [4.0]]), np.array([[1.0], [0.0]]), np.array([1.0, 3.0]))
    assert m.tolist() == [3.5] and s[0] == pytest.approx(1.0)


def test_quantile_and_calibration_by_hand() -> None:
    assert quantile(5.0, 1.0, 0.1, 0, 10) == pytest.approx(5 - 1.2815516, abs=1e-6)
    assert quantile(9.5, 1.0, 0.9, 0, 10) == 10.0  # clipped to the range
    # One clip predicted 5 +- 1, listeners 5, 5.5, 7: the 50% interval (+-0.674) holds 5 and 5.5,
    # the 90% interval (+-1.645) too; 7 is outside both.
    c = calibration([5.0], [1.0], [[5.0, 5.5, 7.0]])
    assert (c.coverage50, c.coverage90, c.ratings, c.clips) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3, 1)
    assert c.nll == pytest.approx((0.5 * (0 + 0.25 + 4) + 3 * 0.5 * math.log(2 * math.pi)) / 3)
    assert c.spread_lcc is None  # needs three clips with two ratings
    c = calibration([5, 5, 5], [0.5, 1.0, 2.0], [[5, 5.5], [4, 6], [2, 8]])
    assert c.spread_lcc == pytest.approx(np.corrcoef([0.5, 1, 2], [np.std([5, 5.5], ddof=1), np.std([4, 6], ddof=1),
                                                                 np.std([2, 8], ddof=1)])[0, 1])


# -- a distribution model end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A distribution model (10 bins) on the tiny demo tree, audio only, with a 0.25 s window so
    that each 0.5 s clip is two windows; exported (verified) into its bundle."""
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from fixtures_train import tiny_demo
    from mos.cli import app

    root = tmp_path_factory.mktemp("dist")
    demo = tiny_demo(root) / "XACLE_dataset"
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(demo), "--distribution", "10", "--epochs", "2", "--batch-size", "8",
                                 "--text-encoder", "none", "--max-seconds", "0.25", "--runs-dir", str(root / "runs"),
                                 "--name", "dist"])
    assert result.exit_code == 0, result.output
    run = root / "runs" / "dist"
    export = runner.invoke(app, ["export", str(run)])
    assert export.exit_code == 0, export.output
    return demo, run, result.output, export.output


def test_training_prints_where_the_targets_come_from_and_writes_spreads(trained) -> None:
    from fixtures_train import read_csv

    demo, run, output, _ = trained
    assert "distribution: 10 bins per target, smoothing 1, 1; score: 32 clips from listener ratings" in output
    assert "quality: 0 clips from listener ratings, 32 from their mean" in output
    rows = read_csv(run / "val_predictions.csv")
    assert {"score_std", "quality_std"} <= set(rows[0])
    assert all(float(r["score_std"]) >= 0 for r in rows)
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["distribution_bins"] == 10


def test_the_bundle_outputs_spreads_that_match_pytorch(trained) -> None:
    _, run, _, export_output = trained
    meta = json.loads((run / "bundle" / "mos.json").read_text())
    assert meta["audio"]["spread"] is True and meta["audio"]["distribution"]["bins"] == 10
    assert meta["audio"]["outputs"] == ["score", "quality", "score_std", "quality_std"]
    # The export's own verification compared ORT with PyTorch on every output, spreads included,
    # and a padded batch with each clip alone.
    report = (run / "bundle" / "export_report.json")
    text = report.read_text() if report.is_file() else export_output
    assert "parity" in text and "padding" in text


def test_score_writes_spreads_and_quantiles_as_validation_predicted_them(trained, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from fixtures_train import read_csv
    from mos.audio import read_audio
    from mos.cli import app
    from mos.trainer.checkpoint import load_model

    demo, run, _, _ = trained
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score", str(demo), "--split", "validation", "--bundle", str(run / "bundle"),
                                      "--quantiles", "0.1,0.9", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in read_csv(out)}
    assert list(next(iter(rows.values())))[3:11] == ["score", "quality", "score_std", "quality_std",
                                                     "score_q10", "score_q90", "quality_q10", "quality_q90"]
    val = {r["id"]: r for r in read_csv(run / "val_predictions.csv")}
    assert set(rows) == set(val)
    for clip_id, row in rows.items():
        # Two windows per clip: the runtime mixes them as validation did (4 decimals there).
        for t in ("score", "quality"):
            assert float(row[t]) == pytest.approx(float(val[clip_id][t]), abs=2e-4)
            assert float(row[f"{t}_std"]) == pytest.approx(float(val[clip_id][f"{t}_std"]), abs=2e-4)
            mean, spread = float(row[t]), float(row[f"{t}_std"])
            assert float(row[f"{t}_q10"]) == pytest.approx(min(max(mean - 1.2815516 * spread, 0), 10), abs=2e-6)
            assert float(row[f"{t}_q90"]) == pytest.approx(min(max(mean + 1.2815516 * spread, 0), 10), abs=2e-6)
    # One window alone: the graph's spread is PyTorch's.
    model, _ = load_model(run)
    wav = next(iter(rows.values()))["path"]
    x = torch.from_numpy(read_audio(wav, 16000)[:4000]).unsqueeze(0)
    with torch.no_grad():
        _, spread = model.scores_and_spread(x, torch.tensor([4000]), clamp=False)
    from mos.runtime.engine import ScoreEngine

    engine = ScoreEngine.load(run / "bundle")
    got = engine.score_arrays([x[0].numpy()], [None])[0]
    assert got[2:4] == pytest.approx(spread[0].tolist(), abs=1e-4)


def test_quantiles_need_a_distribution_bundle(trained, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mos.cli import app

    demo, _, _, _ = trained
    from fixtures_runtime import make_mean_bundle

    plain = make_mean_bundle(tmp_path / "plain", gain=1.0)
    result = CliRunner().invoke(app, ["score", str(demo), "--bundle", str(plain), "--quantiles", "0.1"])
    assert result.exit_code == 2 and "--quantiles needs a bundle whose model predicts the listener spread" in result.output
    result = CliRunner().invoke(app, ["score", str(demo), "--bundle", str(plain), "--quantiles", "1.5"])
    assert result.exit_code == 2 and "--quantiles" in result.output


def test_eval_reports_calibration_against_listener_ratings(trained, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fixtures_train import read_csv
    from mos.cli import app
    from mos.distribution import calibration as calibrate
    from mos.metrics import compute_metrics

    demo, run, _, _ = trained
    preds = run / "val_predictions.csv"
    truth = demo / "meta_data" / "validation_average.csv"  # validation.csv beside it holds the listeners
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", str(preds), str(truth), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "[CALIBRATION] SCORE: listener ratings inside the predicted 50% interval" in result.output
    doc = json.loads(out.read_text())
    cal = doc["results"]["score"]["calibration"]
    assert {"coverage50", "coverage90", "nll", "spread_lcc"} <= set(cal)
    assert "calibration" not in doc["results"].get("quality", {})  # quality has no listener ratings
    # The same numbers by hand from the two files.
    listeners: dict[str, list[float]] = {}
    for r in read_csv(demo / "meta_data" / "validation.csv"):
        listeners.setdefault(r["wav_file_name"], []).append(float(r["score"]))
    rows = read_csv(preds)
    expected = calibrate([float(r["score"]) for r in rows], [float(r["score_std"]) for r in rows],
                         [listeners[r["id"]] for r in rows])
    assert cal["coverage50"] == pytest.approx(expected.coverage50) and cal["ratings"] == expected.ratings == 12 * 4
    assert cal["nll"] == pytest.approx(expected.nll)
    # The per-listener file alone is ground truth too: its means, and the same calibration (the
    # predictions without the trainer's true_* columns, which hold the average file's rounding).
    plain = tmp_path / "plain.csv"
    plain.write_text("id,score,score_std\n" + "".join(f"{r['id']},{r['score']},{r['score_std']}\n" for r in rows))
    result = CliRunner().invoke(app, ["eval", str(plain), str(demo / "meta_data" / "validation.csv"),
                                      "--json", str(tmp_path / "eval2.json")])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "eval2.json").read_text())["results"]["score"]
    assert again["calibration"] == cal
    means = {k: float(np.mean(v)) for k, v in listeners.items()}
    srcc = float(compute_metrics(np.array([float(r["score"]) for r in rows]),
                                 np.array([means[r["id"]] for r in rows])).srcc)
    assert again["utterance"]["srcc"] == pytest.approx(srcc)


def test_int8_judges_spreads_and_quantiles_like_the_scores(trained, tmp_path: Path) -> None:
    """`mos export --quantize int8` of a distribution model compares every output `mos score`
    writes (scores, spreads, 10%/90% quantiles) with fp32 on the run's validation clips, and
    verification checks each of them: a spread that moved is caught like a score."""
    from typer.testing import CliRunner

    from mos.bundle import write_bundle_meta
    from mos.cli import app
    from mos.export import verify_bundle
    from mos.export.agreement import MAX_RELATIVE_ERROR
    from mos.export.onnx_io import embed_metadata

    _, run, _, _ = trained
    bundle = tmp_path / "b"
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(bundle), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    outputs = ["score", "quality", "score_std", "quality_std", "score_q10", "score_q90", "quality_q10", "quality_q90"]
    meta = json.loads((bundle / "mos.json").read_text())
    agreement = meta["export"]["variants"]["int8"]["agreement"]
    assert list(agreement["outputs"]) == outputs and meta["variants"] == {"int8": "audio.int8.onnx"}
    assert all(o["relative_error"] <= MAX_RELATIVE_ERROR for o in agreement["outputs"].values())
    text = " ".join(result.output.split())
    assert all(f"'{o}': Spearman" in text for o in outputs)
    assert "[ok] int8 accuracy: audio.int8.onnx: RMS vs fp32 on 6 clips: 'score' " in text
    assert all(f"'{o}' " in text.split("[ok] int8 accuracy")[1] for o in outputs)
    # What export recorded about the spread, 1000x narrower: int8 now moves it by more than that.
    agreement["outputs"]["score_std"]["sd"] /= 1000
    for name in ("audio.onnx", "audio.int8.onnx"):
        embed_metadata(bundle / name, {k: v for k, v in meta.items() if k != "files"})
    write_bundle_meta(bundle, meta)
    report = verify_bundle(bundle, raise_on_failure=False)
    assert [c.name for c in report.failures] == ["int8 accuracy"]
    assert "on 'score_std' over 6 clips" in report.failures[0].detail
