"""Rating distributions (`mos train --distribution BINS`): the smoothed targets (the edge-exact
beta-binomial kernel and the old Gaussian one), their read-back at the ends of the scale and
mid-scale, the KL loss, the spread's moments and mixtures, calibration pooled and per score band,
all by hand; then a distribution model trained, exported (verified against PyTorch, spreads
included), scored with spreads and quantiles, and evaluated for calibration against per-listener
ratings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mos.distribution import (GAUSSIAN, Grid, bin_centers, calibration, calibration_by_band, grid_points,
                              listener_spread, min_width, quantile, score_band)
from mos.windows import window_mixture

E = math.exp


def test_gaussian_target_from_listener_ratings_by_hand() -> None:
    """The kernel of checkpoints from before the kernel was recorded, kept as it was."""
    centers = bin_centers(0.0, 10.0, 5)
    assert centers.tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
    grid = Grid(0.0, 10.0, 5, GAUSSIAN, 2.0)
    assert grid.values.tolist() == centers.tolist() and grid.kappa == 0.0 and grid.offset == 4.0
    # Width 2: a Gaussian around 3 at the centres is e^-0.5, 1, e^-0.5, e^-2, e^-4.5 (normalised);
    # around 5 it is e^-2, e^-0.5, 1, e^-0.5, e^-2. The target is their mean.
    around3 = np.array([E(-0.5), 1, E(-0.5), E(-2), E(-4.5)])
    around5 = np.array([E(-2), E(-0.5), 1, E(-0.5), E(-2)])
    expected = (around3 / around3.sum() + around5 / around5.sum()) / 2
    got = grid.target([3.0, 5.0])
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[1] == pytest.approx((1 / 2.35951 + 0.60653 / 2.48374) / 2, abs=1e-5)  # 0.33400
    assert got.sum() == pytest.approx(1.0)


def test_gaussian_target_from_a_mean_and_the_listener_spread() -> None:
    centers = bin_centers(0.0, 10.0, 5)
    grid = Grid(0.0, 10.0, 5, GAUSSIAN, 2.0)
    # No ratings: one Gaussian around the mean with sigma = sqrt(width^2 + spread^2) = sqrt(4 + 2.25) = 2.5.
    dens = np.exp(-0.5 * ((centers - 6.0) / 2.5) ** 2)
    assert grid.target((), mean=6.0, spread=1.5) == pytest.approx(dens / dens.sum(), abs=1e-12)
    with pytest.raises(ValueError):
        grid.target()
    assert Grid(0.0, 10.0, 5, GAUSSIAN).smoothing == 2.0  # default: one bin


# -- the edge-exact kernel -------------------------------------------------------------------------


def _read_back_in_torch(cfg_targets, bins: int, targets: np.ndarray, **cfg) -> tuple[np.ndarray, np.ndarray]:
    """What a model whose predicted distributions are `targets` [n, T, bins] gives: MosModel's
    own mean and spread (the functions the exported graph runs)."""
    torch = pytest.importorskip("torch")
    from mos.model import ModelConfig, MosModel

    model = MosModel(ModelConfig(targets=cfg_targets, text_encoder="none", distribution_bins=bins,
                                 channels=(8, 8, 8, 8), hidden=16, **cfg))
    logits = torch.log(torch.from_numpy(targets).double().clamp_min(1e-300)).float()
    with torch.no_grad():
        return model.distribution_mean(logits).numpy(), model.spread(logits).numpy()


def test_the_issue_figures_read_back_exactly_at_the_top_of_a_1_to_5_scale() -> None:
    """1-5, 20 bins: every listener rated 5 -> the target reads back 5.0 and spread 0 (the old
    Gaussian kernel: 4.833 and 0); ratings 5, 5, 5, 4 -> their mean 4.75 and population SD
    sqrt(0.1875) = 0.433 (old: 4.625 and 0.331). In numpy and in the model (the graph's code)."""
    from mos.model import TargetSpec

    grid = Grid(1.0, 5.0, 20)
    all5, three5 = grid.target([5, 5, 5, 5]), grid.target([5, 5, 5, 4])
    assert all5[-1] == 1.0 and all5[:-1].sum() == 0.0  # all mass on the scale's end
    for got in (grid.moments(np.stack([all5, three5])),
                _read_back_in_torch([TargetSpec("score", 1.0, 5.0, 3.0, 1.0)], 20, np.stack([all5, three5])[:, None])):
        mean, spread = (np.ravel(v) for v in got)
        assert mean[0] == pytest.approx(5.0, abs=1e-5) and spread[0] == pytest.approx(0.0, abs=1e-4)
        assert mean[1] == pytest.approx(4.75, abs=1e-5) and spread[1] == pytest.approx(math.sqrt(0.1875), abs=1e-4)
    mean, spread = grid.moments(np.stack([all5, three5]))  # float64: exact to rounding
    assert mean.tolist() == pytest.approx([5.0, 4.75], abs=1e-12) and spread[0] == 0.0
    assert spread[1] == pytest.approx(np.std([5, 5, 5, 4]), abs=1e-12)
    # The Gaussian kernel (old checkpoints) keeps its old figures.
    old = Grid(1.0, 5.0, 20, GAUSSIAN)
    assert old.moments(old.target([5, 5, 5, 5]))[0] == pytest.approx(4.8331, abs=1e-4)
    assert old.moments(old.target([5, 5, 5, 4]))[1] == pytest.approx(0.3305, abs=1e-4)


ROUND_TRIP_RATINGS = {
    "top": [1.0, 1.0, 1.0, 0.9], "bottom": [0.0, 0.0, 0.05, 0.1], "middle": [0.45, 0.5, 0.55, 0.62],
    "both ends": [0.0, 1.0, 1.0], "one listener at the top": [1.0], "near the top": [0.97, 0.99, 1.0, 0.93],
}


@pytest.mark.parametrize("low,high", [(1.0, 5.0), (0.0, 10.0), (0.0, 100.0)])
@pytest.mark.parametrize("bins", [5, 11, 20, 64])
def test_ratings_round_trip_at_both_ends_and_mid_scale(low: float, high: float, bins: int) -> None:
    """Any ratings (here as positions on the scale) read back their mean and population SD, for
    the narrowest smoothing and a wider one."""
    scale = high - low
    for width in (0.0, 0.3 * scale):
        grid = Grid(low, high, bins, width=width)
        for name, positions in ROUND_TRIP_RATINGS.items():
            ratings = [low + p * scale for p in positions]
            target = grid.target(ratings)
            assert target.min() >= 0 and target.sum() == pytest.approx(1.0, abs=1e-12)
            mean, spread = grid.moments(target)
            assert mean == pytest.approx(np.mean(ratings), abs=1e-9 * scale), (name, width)
            assert spread == pytest.approx(np.std(ratings), abs=1e-6 * scale), (name, width)


@pytest.mark.parametrize("low,high,bins", [(1.0, 5.0, 20), (0.0, 10.0, 11), (0.0, 100.0, 64)])
def test_a_mean_with_the_listener_spread_round_trips_and_an_end_is_a_point(low: float, high: float,
                                                                           bins: int) -> None:
    """A clip with only a mean: its target reads back the mean and the pooled listener spread,
    the spread capped at the most a distribution on the scale with that mean can have; a mean at
    an end of the scale is every listener there (spread 0)."""
    grid, scale = Grid(low, high, bins), high - low
    for pos, sd in ((0.5, 0.2), (0.9, 0.1), (0.05, 0.04), (0.5, 0.0)):
        mean, spread = grid.moments(grid.target((), low + pos * scale, sd * scale))
        assert mean == pytest.approx(low + pos * scale, abs=1e-9 * scale)
        assert spread == pytest.approx(sd * scale, abs=1e-6 * scale)
    mean, spread = grid.moments(grid.target((), low + 0.9 * scale, 0.5 * scale))  # more than 0.9 * 0.1 allows
    assert spread == pytest.approx(math.sqrt(0.09) * scale, rel=1e-4)
    for end in (low, high):
        target = grid.target((), end, 0.2 * scale)
        assert target.max() == 1.0 and grid.moments(target) == (pytest.approx(end), 0.0)


def test_the_kernel_values_width_and_its_limits() -> None:
    grid = Grid(1.0, 5.0, 5)
    assert grid.values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0] == grid_points(1, 5, 5).tolist()
    # The narrowest (default) smoothing is the binomial: variance (r - 1)(5 - r) / 4; a rating of 3
    # is Binomial(4, 1/2) over the five values.
    assert grid.smoothing == min_width(1, 5, 5) == 1.0 and grid.kappa == 0.25
    assert grid.target([3.0]) == pytest.approx(np.array([1, 4, 6, 4, 1]) / 16, abs=1e-12)
    assert grid.target([2.0]) == pytest.approx([0.75 ** 4, 4 * 0.25 * 0.75 ** 3, 6 * 0.25 ** 2 * 0.75 ** 2,
                                                4 * 0.25 ** 3 * 0.75, 0.25 ** 4], abs=1e-12)
    assert Grid(1.0, 5.0, 5, width=1.5).kappa == pytest.approx(4 * 1.5 ** 2 / 16)
    with pytest.raises(ValueError, match="at least 1 "):
        Grid(1.0, 5.0, 5, width=0.5)
    with pytest.raises(ValueError, match="less than 2"):
        Grid(1.0, 5.0, 5, width=2.0)
    with pytest.raises(ValueError, match="kernel 'box'"):
        Grid(1.0, 5.0, 5, "box")


def test_a_model_refuses_a_width_the_kernel_cannot_have() -> None:
    pytest.importorskip("torch")
    from mos.errors import MosError
    from mos.model import ModelConfig, MosModel, TargetSpec

    with pytest.raises(MosError, match="--distribution-width: smoothing width 0.2 on 1..5 with 20 bins"):
        MosModel(ModelConfig(targets=[TargetSpec("score", 1.0, 5.0)], text_encoder="none", distribution_bins=20,
                             distribution_width=0.2, channels=(8, 8, 8, 8), hidden=16))


def test_a_model_config_from_before_the_kernel_keeps_the_gaussian_read_back() -> None:
    """Checkpoints store ModelConfig.to_dict(); one written before `distribution_kernel` existed
    is the Gaussian kernel, whose read-back (and training targets) stay as they were."""
    from mos.model import ModelConfig, TargetSpec

    new = ModelConfig(targets=[TargetSpec("score", 1.0, 5.0)], distribution_bins=20)
    assert new.distribution_kernel == "beta-binomial"
    assert ModelConfig.from_dict(new.to_dict()).distribution_kernel == "beta-binomial"
    old = new.to_dict()
    del old["distribution_kernel"]
    old_cfg = ModelConfig.from_dict(old)
    assert old_cfg.distribution_kernel == GAUSSIAN and old_cfg.smoothing_width(old_cfg.targets[0]) == 0.2
    target = old_cfg.grid(old_cfg.targets[0]).target([5, 5, 5, 4])
    mean, spread = _read_back_in_torch(old_cfg.targets, 20, target[None, None], distribution_kernel=GAUSSIAN)
    assert mean.item() == pytest.approx(4.6248, abs=1e-4) and spread.item() == pytest.approx(0.3305, abs=1e-4)


def test_calibration_per_third_of_the_scale_by_hand() -> None:
    """Bands by the clip's true score on 1-5: low below 2.333, high above 3.667, mid between."""
    assert [score_band(t, 1, 5) for t in (1.0, 2.3, 2.34, 3.66, 3.67, 5.0)] == ["low", "low", "mid", "mid",
                                                                                "high", "high"]
    means, spreads = [1.5, 3.0, 4.9, 5.0], [0.5, 1.0, 0.1, 0.0]
    ratings = [[1, 2], [2, 3, 4], [5, 5, 4], [5, 5]]
    truths = [np.mean(r) for r in ratings]  # 1.5, 3, 4.67, 5
    bands = calibration_by_band(means, spreads, ratings, truths, 1.0, 5.0)
    assert [(b.band, b.low, b.high) for b in bands] == [("low", 1, pytest.approx(7 / 3)),
                                                        ("mid", pytest.approx(7 / 3), pytest.approx(11 / 3)),
                                                        ("high", pytest.approx(11 / 3), 5)]
    assert bands[0].calibration == calibration([1.5], [0.5], [[1, 2]])
    assert bands[2].calibration == calibration([4.9, 5.0], [0.1, 0.0], [[5, 5, 4], [5, 5]])
    # High third by hand: the first clip's 50% / 90% half-widths are 0.0674 / 0.1645, so its 5s
    # (0.1 away) are inside 90% only and its 4 in neither; the second clip (spread 0) holds both 5s.
    assert bands[2].calibration.coverage50 == pytest.approx(2 / 5) and bands[2].calibration.coverage90 == pytest.approx(4 / 5)
    assert bands[2].as_dict()["band"] == "high" and bands[2].as_dict()["ratings"] == 5
    assert calibration_by_band([3.0], [1.0], [[3, 3]], [3.0], 1.0, 5.0)[0].band == "mid"  # empty bands left out


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


def test_gaussian_moments_take_the_smoothing_out_and_windows_mix() -> None:
    grid = Grid(0.0, 6.0, 3, GAUSSIAN, 1.0)
    assert grid.values.tolist() == [1.0, 3.0, 5.0]
    probs = np.array([0.25, 0.5, 0.25])  # mean 3, variance 0.25 * 4 * 2 = 2
    mean, spread = grid.moments(probs)
    assert mean == pytest.approx(3.0) and spread == pytest.approx(1.0)  # sqrt(2 - 1)
    assert Grid(0.0, 6.0, 3, GAUSSIAN, 2.0).moments(probs)[1] == 0.0  # never negative
    # Two windows (weights 1 and 3): Normal(2, 1) and Normal(4, 0); mean 3.5, second moment
    # (1 * (1 + 4) + 3 * 16) / 4 = 13.25, spread sqrt(13.25 - 12.25) = 1.
    m, s = window_mixture(np.array([[2.0], [4.0]]), np.array([[1.0], [0.0]]), np.array([1.0, 3.0]))
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
    # Against each clip's population listener SD (what its training target reads back).
    c = calibration([5, 5, 5], [0.5, 1.0, 2.0], [[5, 5.5], [4, 6, 5], [2, 8]])
    assert c.spread_lcc == pytest.approx(np.corrcoef([0.5, 1, 2], [0.25, math.sqrt(2 / 3), 3.0])[0, 1])


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


@pytest.mark.slow
def test_training_prints_where_the_targets_come_from_and_writes_spreads(trained) -> None:
    from fixtures_train import read_csv

    demo, run, output, _ = trained
    assert "distribution: 10 bins per target, beta-binomial smoothing 1.67, 1.67; score: 32 clips from listener ratings" in output
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
    assert meta["audio"]["distribution"]["kernel"] == "beta-binomial"
    assert meta["audio"]["outputs"] == ["score", "quality", "score_std", "quality_std", "embedding"]
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


def test_the_graph_reads_back_the_ends_exactly_as_pytorch_does(tmp_path: Path) -> None:
    """A 20-bin model on 1-5 whose heads always predict the targets of ratings [5, 5, 5, 5] and
    [5, 5, 5, 4] (zero weights, log-target biases): exported, the bundle gives PyTorch's scores
    and spreads, and scores any clip 5.0 +- 0 and 4.75 +- 0.433, quantiles included."""
    torch = pytest.importorskip("torch")
    from fixtures_runtime import clip
    from mos.export import export_bundle
    from mos.model import ModelConfig, MosModel, TargetSpec
    from mos.runtime.engine import EngineOptions, ScoreEngine
    from mos.trainer.checkpoint import save_checkpoint

    targets = [TargetSpec("all5", 1.0, 5.0, 3.5, 1.0), TargetSpec("three5", 1.0, 5.0, 3.0, 0.8)]
    model = MosModel(ModelConfig(targets=targets, text_encoder="none", distribution_bins=20, channels=(8, 8, 8, 8),
                                 hidden=16))
    grid = model.cfg.grid(targets[0])
    with torch.no_grad():
        for name, ratings in (("all5", [5, 5, 5, 5]), ("three5", [5, 5, 5, 4])):
            model.heads[name].weight.zero_()
            model.heads[name].bias.copy_(torch.from_numpy(np.log(np.maximum(grid.target(ratings), 1e-30))))
    checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
    save_checkpoint(checkpoint, model, {"data": "synthetic", "validation_metrics": {}, "epoch": 0, "train_config": {}})
    export_bundle(checkpoint, tmp_path / "bundle", opset=17, verify=False)  # (the trained model's export verifies)
    engine = ScoreEngine.load(tmp_path / "bundle", EngineOptions(device="cpu", quantiles=(0.1, 0.9)))
    clips = [clip(0.7, seed=1), clip(1.3, seed=2)]
    rows = engine.score_arrays(clips, [None, None])
    for wave, row in zip(clips, rows):
        with torch.no_grad():
            scores, spread = model.scores_and_spread(torch.from_numpy(wave)[None], torch.tensor([len(wave)]), clamp=False)
        assert row[:4] == pytest.approx(torch.cat([scores, spread], -1)[0].tolist(), abs=1e-5)
        # all5, three5, all5_std, three5_std, all5_q10, all5_q90, three5_q10, three5_q90
        assert row[:4] == pytest.approx([5.0, 4.75, 0.0, math.sqrt(0.1875)], abs=1e-4)
        assert row[4:6] == pytest.approx([5.0, 5.0], abs=1e-4)
        assert row[6:] == pytest.approx([4.75 - 1.2815516 * 0.4330127, 5.0], abs=1e-4)


def test_a_checkpoint_and_bundle_from_before_the_kernel_still_load(trained, tmp_path: Path) -> None:
    """An old checkpoint (no `distribution_kernel`, the Gaussian kernel's bin centres and width in
    its state) loads with the Gaussian read-back; an old bundle (no `kernel` in mos.json) scores
    as before: its graph holds its read-back."""
    torch = pytest.importorskip("torch")
    import shutil

    from mos.model import ModelConfig
    from mos.runtime.engine import ScoreEngine
    from mos.trainer.checkpoint import load_checkpoint, load_model

    _, run, _, _ = trained
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    del ckpt["model_config"]["distribution_kernel"]
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    grids = [cfg.grid(t) for t in cfg.targets]
    ckpt["state_dict"]["bin_centers"] = torch.tensor(np.stack([g.values for g in grids]), dtype=torch.float32)
    ckpt["state_dict"]["bin_width"] = torch.tensor([g.smoothing for g in grids], dtype=torch.float32)
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    model, _ = load_model(old)
    assert model.cfg.distribution_kernel == GAUSSIAN and grids[0].smoothing == 1.0  # one bin of 0-10
    logits = torch.randn(3, 2, 10)
    with torch.no_grad():
        spread = model.spread(logits).numpy()
    probs = torch.softmax(logits, -1).double().numpy()
    for j, g in enumerate(grids):
        assert spread[:, j] == pytest.approx(g.moments(probs[:, j])[1], abs=1e-5)

    bundle = tmp_path / "old-bundle"
    shutil.copytree(run / "bundle", bundle)
    meta = json.loads((bundle / "mos.json").read_text())
    del meta["audio"]["distribution"]["kernel"]
    (bundle / "mos.json").write_text(json.dumps(meta))
    x = [np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1]
    assert ScoreEngine.load(bundle).score_arrays(x, [None]) == pytest.approx(
        ScoreEngine.load(run / "bundle").score_arrays(x, [None]))


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
    # Per third of the 0-10 scale, by each clip's true (listeners') mean.
    truth_means = {r["wav_file_name"]: float(r["average_score"]) for r in read_csv(truth)}
    by_band = calibration_by_band([float(r["score"]) for r in rows], [float(r["score_std"]) for r in rows],
                                  [listeners[r["id"]] for r in rows], [truth_means[r["id"]] for r in rows], 0.0, 10.0)
    assert cal["bands"] == {b.band: b.as_dict() for b in by_band} and by_band
    assert sum(b.calibration.ratings for b in by_band) == cal["ratings"]
    for b in by_band:
        assert f"[CALIBRATION] SCORE {b.band} third (true score {b.low:.4g}-{b.high:.4g}): 50% interval " in result.output
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


@pytest.mark.slow
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
