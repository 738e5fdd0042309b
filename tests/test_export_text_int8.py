"""text.int8.onnx: `mos export --quantize int8` writes a static int8 text model for text bundles;
`mos score --int8` uses it (real MiniLM export, real ONNX Runtime sessions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_runtime import make_folder, read_csv_dicts
from typer.testing import CliRunner

from mos.audio import read_audio
from mos.bundle import load_bundle, write_bundle_meta
from mos.files import sha256_file
from mos.cli import app
from mos.errors import BundleError
from mos.export import ExportReport, export_bundle
from mos.export import text_int8
from mos.export.clips import CAPTIONS, LONG_CAPTION, synthetic_clip
from mos.export.text_int8 import TEXT_INT8_BATCH_TOL, TEXT_INT8_MODEL
from mos.model.text_encoder import FrozenTextEncoder
from mos.runtime import EngineOptions, ScoreEngine
from mos.runtime.engine import open_text_encoder
from mos.runtime.session import SessionConfig

SR = 16000
WORDS = "a dog barks while rain falls on a tin roof and a piano plays softly in a quiet cafe".split()


def _caption(i: int) -> str:
    rng = np.random.default_rng(500 + i)
    return " ".join(rng.choice(WORDS, 6 + i % 9))


def _trained_clips(run: Path) -> tuple[list[np.ndarray], list[str], np.ndarray, list[np.ndarray], list[str]]:
    """The run's validation clips, captions and ratings, its calibration clips and its training
    captions, read as `mos export` reads them."""
    from mos.export.run_data import run_clips
    from mos.trainer.checkpoint import load_model

    clips = run_clips(run, load_model(run)[0].cfg)
    assert clips.validation is not None and clips.calibration is not None and clips.text_captions
    val = [np.array(c) for c in clips.validation[0]]
    clips.close()
    return val, list(clips.validation[1] or []), clips.validation[2], clips.calibration, clips.text_captions or []


@pytest.fixture(scope="module")
def trained_text_run(minilm_bundle) -> Path:
    """A MiniLM model trained (2 epochs) on the tiny demo set: int8 agrees with it (the session's
    MiniLM run, conftest.minilm_bundle)."""
    return minilm_bundle.run


@pytest.fixture(scope="module")
def exported(minilm_bundle) -> tuple[Path, ExportReport, tuple]:
    """`mos export --quantize int8` of the trained run: calibrated on its training clips and
    captions, judged on its validation clips (the session's MiniLM export, shared)."""
    return minilm_bundle.bundle, minilm_bundle.report, _trained_clips(minilm_bundle.run)


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "mos.json").read_text())


def test_text_int8_written_listed_and_hashed(exported) -> None:
    bundle, report, validation = exported
    assert len(validation[0]) == 12
    q = report.text_int8
    assert q is not None and not q.dropped and not q.forced, report.notes
    assert q.agreement.held_out and q.agreement.clips == 12 and not q.agreement.failures()
    meta = _meta(bundle)
    assert meta["variants"] == {"int8": "audio.int8.onnx", "text_int8": TEXT_INT8_MODEL}
    assert meta["files"][TEXT_INT8_MODEL] == sha256_file(bundle / TEXT_INT8_MODEL)
    loaded = load_bundle(bundle)
    assert loaded.text_model("int8") == bundle / TEXT_INT8_MODEL and loaded.text_model() == bundle / "text.onnx"
    assert loaded.audio_variants == {"int8": "audio.int8.onnx"}
    info = meta["export"]["variants"]["int8"]["text"]
    assert info["written"] and info["calibration"] == "the run's training captions (32)"
    assert info["calibration_captions"] == len(set(validation[4])) and info["batch_gap"] <= TEXT_INT8_BATCH_TOL
    assert 0.95 < info["pooled_cosine_vs_fp32"]["min"] <= info["pooled_cosine_vs_fp32"]["median"] < 1.0
    assert set(info["validation_srcc"]["score"]) == {"fp32", "int8_text", "int8_audio_and_text", "drop", "drop_bound"}
    assert info["agreement_with_int8_audio"]["measured_on"] == "12 validation clips"
    assert set(info["agreement_with_int8_audio"]["outputs"]) == {"score", "quality"}
    assert (bundle / TEXT_INT8_MODEL).stat().st_size < 0.75 * (bundle / "text.onnx").stat().st_size
    assert report.verify is not None and report.verify.ok
    text = "\n".join(report.format())
    assert "text int8 (" in text and "validation SRCC fp32 on 12 clips" in text and "-> text int8" in text
    assert "int8 audio + int8 text vs fp32 on 12 validation clips, label-free:" in text
    # the weight MatMuls are quantized, the attention MatMuls (two activations) are not
    import onnx

    weights, attention = text_int8.weight_matmuls(onnx.load(str(bundle / "text.onnx"), load_external_data=False))
    assert len(weights) == 36 and len(attention) == 12 and q.excluded_nodes == attention


def test_text_int8_file_corrupted_is_refused(exported, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(exported[0], tmp_path / "b"))
    with (bundle / TEXT_INT8_MODEL).open("r+b") as f:
        f.seek(1000)
        f.write(b"\0\1\2\3")
    with pytest.raises(BundleError, match="text.int8.onnx: corrupted"):
        load_bundle(bundle)


@pytest.mark.slow
def test_caption_features_do_not_depend_on_the_batch(exported) -> None:
    bundle = load_bundle(exported[0])
    encoder = open_text_encoder(bundle, SessionConfig(device="cpu", threads=1), int8=True)
    assert encoder.runner is not None
    captions = [*CAPTIONS, LONG_CAPTION, "rain", _caption(7)]
    ids = encoder.ids(captions)
    together = encoder.features(ids)
    worst = max(float(np.abs(encoder.features([seq])[0] - t).max()) for seq, t in zip(ids, together))
    assert worst <= TEXT_INT8_BATCH_TOL  # measured 0.0: static scales, row-wise kernels
    fp32 = open_text_encoder(bundle, SessionConfig(device="cpu", threads=1))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(fp32.encode(captions), encoder.encode(captions)))
    assert diff > 1e-3  # really the int8 model


def _score_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["score", *[str(a) for a in args]])
    return result.exit_code, result.output


def _scores(out: Path) -> tuple[list[str], np.ndarray]:
    rows = read_csv_dicts(out)
    return [r["id"] for r in rows], np.array([[float(r["score"]), float(r["quality"])] for r in rows])


@pytest.mark.slow
def test_score_int8_uses_text_int8(exported, tmp_path: Path) -> None:
    bundle = exported[0]
    folder, captions = make_folder(tmp_path, 6)
    out = tmp_path / "int8.csv"
    code, output = _score_cli(folder, "--captions", captions, "--bundle", bundle, "--out", out, "--int8",
                              "--threads", "1", "--quiet")
    assert code == 0, output
    ids, got = _scores(out)
    caps = [r["caption"] for r in read_csv_dicts(out)]
    waves = [read_audio(folder / i, SR) for i in ids]
    int8 = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1, int8=True))
    np.testing.assert_allclose(got, int8.score_arrays(waves, caps), atol=2e-6)
    fp32 = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1))
    int8_audio_only = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1, int8=True))
    int8_audio_only.text = fp32.text
    other = int8_audio_only.score_arrays(waves, caps)
    # int8 text moves scores a little (1-5 scale): measured max ~0.01
    assert 1e-5 < float(np.abs(got - other).max()) < 0.08


@pytest.mark.slow
def test_old_bundle_without_text_int8_scores_with_int8(exported, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(exported[0], tmp_path / "old", ignore=shutil.ignore_patterns(TEXT_INT8_MODEL)))
    meta = _meta(bundle)
    del meta["variants"]["text_int8"], meta["files"][TEXT_INT8_MODEL], meta["export"]["variants"]["int8"]["text"]
    write_bundle_meta(bundle, meta)
    old = load_bundle(bundle)
    assert not old.has_text_variant("int8")
    with pytest.raises(BundleError, match="no int8 text model"):
        old.text_model("int8")
    folder, captions = make_folder(tmp_path, 3)
    out = tmp_path / "old.csv"
    code, output = _score_cli(folder, "--captions", captions, "--bundle", bundle, "--out", out, "--int8",
                              "--threads", "1", "--quiet")
    assert code == 0, output
    ids, got = _scores(out)
    caps = [r["caption"] for r in read_csv_dicts(out)]
    fp32_text = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1))
    engine = ScoreEngine(old, EngineOptions(device="cpu", threads=1, int8=True), text=fp32_text.text)
    np.testing.assert_allclose(got, engine.score_arrays([read_audio(folder / i, SR) for i in ids], caps), atol=2e-6)


@pytest.mark.slow
def test_text_int8_that_misses_the_rule_is_dropped_and_audio_int8_kept(
    trained_text_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberately perturbed text int8 (every weight's int8 scale x 3, so every weight MatMul
    of the caption encoder is three times too large): int8 audio + int8 text no longer agrees with fp32,
    while int8 audio alone does. Only text.int8.onnx is left out, after a second try with the FFN
    down-projections fp32 (perturbed the same way)."""
    import onnx

    real = text_int8.quantize_text

    def perturbed(src: Path, out: Path, feeds: list, down_fp32: bool = False) -> list[str]:
        kept = real(src, out, feeds, down_fp32)
        model = onnx.load(str(out))
        weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
        scales = {n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
        for init in model.graph.initializer:
            if init.name in scales:
                init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 3.0, init.name))
        assert scales
        onnx.save(model, str(out))
        return kept

    monkeypatch.setattr(text_int8, "quantize_text", perturbed)
    val, val_caps, ratings, cal, train_caps = _trained_clips(trained_text_run)
    report = export_bundle(trained_text_run, tmp_path / "b", quantize="int8", validation=(val, val_caps, ratings),
                           text_calibration_captions=train_caps)
    assert report.int8 is not None and not report.int8.dropped and not report.int8.forced, report.notes
    q = report.text_int8
    assert q is not None and q.dropped and q.calibration == "the run's training captions (32)"
    assert q.agreement.failures() and q.agreement.judged
    # tried with every weight MatMul int8, then again with the FFN down-projections fp32
    assert q.method.endswith(text_int8.METHOD_DOWN_FP32) and len(q.excluded_nodes) == 12 + 6
    assert any(w.startswith("with every weight MatMul int8: with int8 audio + int8 text: '") for w in q.warnings)
    meta = _meta(tmp_path / "b")
    assert meta["variants"] == {"int8": "audio.int8.onnx"} and not (tmp_path / "b" / TEXT_INT8_MODEL).exists()
    assert meta["export"]["variants"]["int8"]["text"]["written"] is False
    notes = [n for n in report.notes if n.startswith("text int8 variant NOT written")]
    assert len(notes) == 1 and "with int8 audio + int8 text: '" in notes[0] and "\n" not in notes[0]
    assert report.verify is not None and report.verify.ok
