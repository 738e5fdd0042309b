"""Bias correction of int8 (mos.export.bias): the mean shift of each output on the calibration
clips is folded into audio.int8.onnx, before any clamp, and the int8 rule judges the corrected file.

A real quantized model's shift depends on the model; here a known one is added to the file
quantize_static writes (a constant, or one that grows with the clip's length, so that calibration
and validation clips of different lengths have different shifts), then export runs as usual."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
from fixtures_export import train_demo_run
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from mos.bundle import load_bundle
from mos.cli import app
from mos.export import export_bundle, quantize
from mos.export.bias import PREFIX, fold_offsets
from mos.export.run_data import run_clips
from mos.trainer.checkpoint import load_model

SR = 16000
BIAS = 2.0  # added to int8's 'score' on a 0-10 scale: far more than 0.14 x the spread of the scores


def add_bias(path: Path, output: str, constant: float = 0.0, per_second: float = 0.0, rate: int = SR) -> None:
    """Add `constant` + `per_second` x (the clip's length in seconds) to `output` of the ONNX file."""
    model = onnx.load(str(path))
    g = model.graph
    raw = f"{output}/raw"
    for node in g.node:
        node.output[:] = [raw if o == output else o for o in node.output]
        node.input[:] = [raw if i == output else i for i in node.input]
    g.initializer.extend([numpy_helper.from_array(np.array(constant, np.float32), "bias/c"),
                          numpy_helper.from_array(np.array(per_second / rate, np.float32), "bias/k")])
    g.node.extend([
        helper.make_node("Cast", ["lengths"], ["bias/len"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["bias/len", "bias/k"], ["bias/grow"]),
        helper.make_node("Add", ["bias/grow", "bias/c"], ["bias/total"]),
        helper.make_node("Add", [raw, "bias/total"], [output]),
    ])
    onnx.save(model, str(path))


def biased_quantizer(monkeypatch: pytest.MonkeyPatch, **bias: float) -> None:
    """audio.int8.onnx comes out of quantize_static with `add_bias(..., 'score', **bias)`."""
    real = quantize.run_quantize_static

    def run(src: Path, out: Path, *args, **kwargs) -> None:
        real(src, out, *args, **kwargs)
        add_bias(out, "score", **bias)

    monkeypatch.setattr(quantize, "run_quantize_static", run)


def ort_scores(path: Path, clips: list[np.ndarray]) -> np.ndarray:
    """[clips, outputs] of the ONNX file, each clip alone, plain onnxruntime (unclamped)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name != "embedding"]  # the scores (and spreads)
    rows = [session.run(names, {"waveform": c[None].astype(np.float32), "lengths": np.array([len(c)], np.int64)})
            for c in clips]
    return np.array([[float(o[0]) for o in row] for row in rows])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """A run trained on the tiny demo set (audio only: 'score', 'quality', 0-10) with its 32
    training clips for calibration and its 12 validation clips and ratings, as `mos export` reads them."""
    run = train_demo_run(tmp_path_factory.mktemp("bias"))
    clips = run_clips(run, load_model(run)[0].cfg)
    assert clips.calibration is not None and clips.validation is not None
    val = [np.array(c) for c in clips.validation[0]]
    clips.close()
    return run, clips.calibration, val, clips.validation[2]


def test_fold_offsets_corrects_before_the_clamp_and_keeps_spreads_nonnegative(tmp_path: Path) -> None:
    """A hand-made graph: 's' unclamped, 'c' = Clip(x, 1, 5), 'sd' = |s| (computed from 's')."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b"])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b"]) for n in ("s", "c", "sd")]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 1.0), ("hi", 5.0))]
    nodes = [helper.make_node("Identity", ["x"], ["s"]), helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
             helper.make_node("Abs", ["s"], ["sd"])]
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits),
                                opset_imports=[helper.make_opsetid("", 17)]), str(path))
    fold_offsets(path, {"s": 1.0, "c": 2.0, "sd": -0.5}, nonnegative={"sd"})
    s, c, sd = ort.InferenceSession(str(path)).run(None, {"x": np.array([-3.0, 0.2, 2.0, 4.5], np.float32)})
    np.testing.assert_allclose(s, [-2.0, 1.2, 3.0, 5.5])  # shifted as it is
    np.testing.assert_allclose(c, [1.0, 2.2, 4.0, 5.0])  # Clip(x + 2, 1, 5): within its range
    np.testing.assert_allclose(sd, [2.5, 0.0, 1.5, 4.0])  # max(|x| - 0.5, 0), |.| of the uncorrected 's'
    clip = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Clip")
    assert clip.input[0] == f"{PREFIX}/c/corrected"


@pytest.mark.slow
def test_a_shifted_int8_is_corrected_on_the_calibration_clips_and_kept(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8's 'score' comes out BIAS higher than fp32's on every clip: the correction takes it
    out (mean int8 - fp32 on the calibration clips ~0), the int8 rule keeps the corrected file,
    mos.json and the report record the offsets, and `mos score --int8` and `mos bench` (which
    load bundle.audio_model('int8')) get the corrected scores."""
    run, calibration, val, ratings = trained
    biased_quantizer(monkeypatch, constant=BIAS)
    bundle = tmp_path / "b"
    report = export_bundle(run, bundle, quantize="int8", calibration_clips=calibration,
                           validation=(val, None, ratings))
    q = report.int8
    assert q is not None and not q.dropped and not q.forced, report.notes
    offsets = q.bias_correction.offsets
    assert set(offsets) == {"score", "quality"} and offsets["score"] == pytest.approx(-BIAS, abs=0.2)
    fp32 = ort_scores(bundle / "audio.onnx", calibration)
    int8 = ort_scores(bundle / "audio.int8.onnx", calibration)
    np.testing.assert_allclose((int8 - fp32).mean(axis=0), 0.0, atol=1e-4)
    assert abs(q.agreement.outputs["score"].shift) < 0.1 * BIAS
    recorded = json.loads((bundle / "mos.json").read_text())["export"]["variants"]["int8"]["bias_correction"]
    assert recorded["measured_on"] == "32 calibration clips"
    assert recorded["offsets"] == {k: round(v, 6) for k, v in offsets.items()}
    text = "\n".join(report.format())
    assert (f"bias correction (mean fp32 - int8 on the 32 calibration clips, added to int8's outputs in the graph): "
            f"'score' {offsets['score']:+.4g}, 'quality' {offsets['quality']:+.4g}") in text
    assert report.verify is not None and report.verify.ok

    # the file `mos score --int8` and `mos bench` load is the corrected one
    loaded = load_bundle(bundle).audio_model("int8")
    assert any(n.name == f"{PREFIX}/score/Add" for n in onnx.load(str(loaded)).graph.node)
    folder = tmp_path / "clips"
    folder.mkdir()
    for k, clip in enumerate(calibration):
        sf.write(folder / f"{k:02d}.wav", clip, SR, subtype="FLOAT")

    def score(*args: str) -> dict[str, float]:
        out = tmp_path / f"scores{len(args)}.csv"
        res = CliRunner().invoke(app, ["score", str(folder), "--bundle", str(bundle), "--out", str(out),
                                       "--device", "cpu", "-q", *args])
        assert res.exit_code == 0, res.output
        with out.open() as f:
            return {r["id"]: float(r["score"]) for r in csv.DictReader(f)}

    plain, int8_cli = score(), score("--int8")
    diffs = np.array([int8_cli[k] - plain[k] for k in plain])
    assert len(diffs) == 32 and abs(diffs.mean()) < 0.05 * BIAS and 0 < np.abs(diffs).max() < BIAS / 2
    assert all(0.0 <= v <= 10.0 for v in int8_cli.values())


@pytest.mark.slow
def test_the_correction_is_measured_on_the_calibration_clips_not_the_validation_clips(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8's 'score' moves by 1 per second of clip: the calibration clips (0.5 s) move by 0.5,
    the validation clips (made 2 s long) by 2. The recorded offset is the calibration clips' (their
    mean difference is ~0 after it); on the validation clips the rest of the shift remains."""
    run, calibration, val, ratings = trained
    biased_quantizer(monkeypatch, per_second=1.0)
    long_val = [np.tile(c, 4) for c in val]
    bundle = tmp_path / "b"
    report = export_bundle(run, bundle, quantize="int8", calibration_clips=calibration,
                           validation=(long_val, None, ratings), force=True, verify=False)
    q = report.int8
    assert q is not None and not q.dropped
    assert {len(c) for c in calibration} == {SR // 2} and {len(c) for c in long_val} == {2 * SR}
    fp32_cal, int8_cal = ort_scores(bundle / "audio.onnx", calibration), ort_scores(bundle / "audio.int8.onnx", calibration)
    fp32_val, int8_val = ort_scores(bundle / "audio.onnx", long_val), ort_scores(bundle / "audio.int8.onnx", long_val)
    assert (int8_cal - fp32_cal)[:, 0].mean() == pytest.approx(0.0, abs=1e-4)
    assert (int8_val - fp32_val)[:, 0].mean() == pytest.approx(1.5, abs=0.2)
    assert q.bias_correction.offsets["score"] == pytest.approx(-0.5, abs=0.2)
    assert q.agreement.outputs["score"].shift == pytest.approx(1.5, abs=0.2)  # the rule sees what is left


@pytest.mark.slow
def test_a_distribution_model_keeps_its_spreads_nonnegative_and_its_scores_in_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8's 'score_std' grows by 40 per second of clip: on calibration clips of 0.05-0.25 s the
    correction (their mean, about -6) would take the shortest clips' spreads below 0; they stop at
    0. Every output is corrected, and what `mos score --int8` gives (scores, spreads, quantiles,
    clips of one window and of many) stays on the scale."""
    from fixtures_export import SMALL

    from mos.model import ModelConfig, MosModel, TargetSpec
    from mos.runtime import EngineOptions, ScoreEngine
    from mos.trainer.checkpoint import save_checkpoint

    model = MosModel(ModelConfig(targets=[TargetSpec("score", 0.0, 10.0, 5.0, 2.0)], text_encoder="none",
                                 distribution_bins=10, window_seconds=0.25, **SMALL)).eval()
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", model,
                    {"data": "synthetic", "validation_metrics": {}, "epoch": 0, "train_config": {}})
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    clips = [(0.3 * np.sin(2 * np.pi * (200 + 30 * k) * t) + 0.05 * (k % 5) * rng.standard_normal(SR))
             .astype(np.float32)[: int(s * SR)] for k, s in enumerate(np.linspace(0.05, 0.25, 21))]
    real = quantize.run_quantize_static

    def run(src: Path, out: Path, *args, **kwargs) -> None:
        real(src, out, *args, **kwargs)
        add_bias(out, "score_std", per_second=40.0)

    monkeypatch.setattr(quantize, "run_quantize_static", run)
    bundle = tmp_path / "b"
    report = export_bundle(tmp_path / "run", bundle, quantize="int8", calibration_clips=clips, force=True, verify=False)
    q = report.int8
    assert q is not None and not q.dropped
    offsets = q.bias_correction.offsets
    assert set(offsets) == {"score", "score_std"} and offsets["score_std"] == pytest.approx(-40.0 * 0.15, abs=0.3)
    fp32, int8 = ort_scores(bundle / "audio.onnx", clips), ort_scores(bundle / "audio.int8.onnx", clips)
    seconds = np.array([len(c) / SR for c in clips])
    unclipped = fp32[:, 1] + 40.0 * seconds + offsets["score_std"]
    assert (unclipped < 0).sum() >= 3 and np.all(int8[:, 1] >= 0)  # would have gone below 0: stopped at 0
    np.testing.assert_allclose(int8[unclipped < 0, 1], 0.0)
    np.testing.assert_allclose(int8[unclipped > 0.5, 1], unclipped[unclipped > 0.5], atol=0.05)
    assert (int8 - fp32)[:, 0].mean() == pytest.approx(0.0, abs=1e-4)
    engine = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1, int8=True, quantiles=(0.1, 0.9)))
    rows = engine.score_arrays(clips + [np.tile(c, 9) for c in clips[::5]], [None] * (len(clips) + 5))
    assert engine.columns == ["score", "score_std", "score_q10", "score_q90"]
    assert np.all(rows[:, [0, 2, 3]] >= 0.0) and np.all(rows[:, [0, 2, 3]] <= 10.0) and np.all(rows[:, 1] >= 0.0)
