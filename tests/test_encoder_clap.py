"""CLAP from a local directory (a tiny random ClapModel saved here, no download): the in-graph
front end against transformers' ClapFeatureExtractor (rand_trunc) on generated and real audio,
the audio encoder against ClapModel.get_audio_features, padding invariance, ONNX export and
onnxruntime parity; the text tower as a text encoder (one token per caption) through export
and the torch-free runtime; refused directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

from mos.errors import MosError  # noqa: E402
from mos.model.encoders import build_audio_encoder, resolve_audio_encoder  # noqa: E402
from mos.model.encoders.loading import encoder_sha256  # noqa: E402
from mos.model.text_encoder import FrozenTextEncoder  # noqa: E402

from fixtures_encoders import CAPTIONS, PROJECTION, make_tiny_clap, tiny_clap_config  # noqa: E402

RATE = 48000
WINDOW = 10 * RATE
# Measured: max |ours - extractor| 1e-4 dB on these generated clips, 1.3e-3 dB on real speech
# (MUSHRA clips resampled to 48 kHz; the extractor's STFT is float64, ours float32).
DB_TOL_GENERATED = 5e-4
DB_TOL_SPEECH = 5e-3


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap")


@pytest.fixture(scope="module")
def reference(clap_dir: Path):
    from transformers import ClapFeatureExtractor, ClapModel

    return ClapFeatureExtractor.from_pretrained(str(clap_dir)), ClapModel.from_pretrained(str(clap_dir)).eval()


@pytest.fixture(scope="module")
def encoder(clap_dir: Path):
    return build_audio_encoder(str(clap_dir)).eval()


def generated(seconds: float, seed: int = 0) -> np.ndarray:
    """A chirp, a gated 3 kHz tone and noise: broadband audio at 48 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    x = 0.3 * np.sin(2 * np.pi * (200 + 800 * t) * t) + 0.2 * np.sin(2 * np.pi * 3000 * t) * (t % 0.5 < 0.2)
    return (x + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def extractor_mel(extractor, x: np.ndarray, padding: str = "repeatpad") -> np.ndarray:
    out = extractor(x, sampling_rate=RATE, truncation="rand_trunc", padding=padding, return_tensors="np")
    return out["input_features"][0, 0]


def our_mel(encoder, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return encoder.front_end(torch.from_numpy(x)[None], torch.tensor([x.size]))[0, 0].numpy()


def padded(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    wave = np.zeros((len(clips), max(c.size for c in clips)), dtype=np.float32)
    for i, c in enumerate(clips):
        wave[i, : c.size] = c
    return torch.from_numpy(wave), torch.tensor([c.size for c in clips], dtype=torch.int64)


def test_resolve_reads_rate_window_and_pins_files(clap_dir: Path) -> None:
    info = resolve_audio_encoder(str(clap_dir))
    assert (info.kind, info.sample_rate, info.window_seconds, info.out_dim) == ("clap", RATE, 10.0, PROJECTION)
    assert info.padding_invariant and info.sha256 == encoder_sha256(clap_dir)
    assert info.parameters > 0


@pytest.mark.parametrize("seconds", [0.37, 1.0, 3.3, 7.9, 10.0])
def test_front_end_matches_clap_feature_extractor(encoder, reference, seconds: float) -> None:
    extractor, _ = reference
    x = generated(seconds, seed=int(seconds * 100))
    ref = extractor_mel(extractor, x)
    ours = our_mel(encoder, x)
    assert ours.shape == ref.shape == (1001, 64)
    assert np.abs(ours - ref).max() < DB_TOL_GENERATED


@pytest.mark.parametrize("padding", ["repeat", "pad"])
def test_front_end_follows_the_extractor_padding(clap_dir: Path, reference, tmp_path: Path, padding: str) -> None:
    extractor, _ = reference
    other = tmp_path / "clap"
    shutil.copytree(clap_dir, other)
    pre = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text(json.dumps({**pre, "padding": padding}))
    x = generated(2.7, seed=3)
    ours = our_mel(build_audio_encoder(str(other)), x)
    assert np.abs(ours - extractor_mel(extractor, x, padding)).max() < DB_TOL_GENERATED
    assert np.abs(ours - extractor_mel(extractor, x, "repeatpad")).max() > 1.0  # the padding is really different


def test_front_end_matches_on_real_speech(encoder, reference) -> None:
    from fixtures_mushra import _find_real

    from mos.audio import read_audio

    root = _find_real()
    if root is None:
        pytest.skip("the real MUSHRA clips are not on this machine")
    extractor, _ = reference
    for path in sorted((root / "audio").glob("stim_0[1-3]/*.wav"))[:6]:
        x = read_audio(path, RATE)
        assert np.abs(our_mel(encoder, x) - extractor_mel(extractor, x)).max() < DB_TOL_SPEECH, path


def test_a_longer_clip_is_cut_to_its_first_window(encoder, reference) -> None:
    extractor, _ = reference
    x = generated(12.5, seed=5)
    assert np.abs(our_mel(encoder, x) - extractor_mel(extractor, x[:WINDOW])).max() < DB_TOL_GENERATED


def test_encoder_matches_get_audio_features(encoder, reference) -> None:
    extractor, model = reference
    for seconds in (0.6, 4.2, 10.0):
        x = generated(seconds, seed=7)
        feats = torch.from_numpy(extractor_mel(extractor, x)[None, None]).float()
        with torch.no_grad():
            want = model.get_audio_features(input_features=feats).pooler_output
            frames, frame_lengths = encoder(torch.from_numpy(x)[None], torch.tensor([x.size]))
        assert frames.shape == (1, 1, PROJECTION) and frame_lengths.tolist() == [1]
        assert torch.allclose(frames[:, 0], want, atol=1e-5), (frames[:, 0] - want).abs().max()


def test_a_clip_scores_the_same_alone_or_padded_in_a_batch(encoder) -> None:
    clips = [generated(1.3, 1), generated(10.0, 2), generated(0.25, 3), generated(4.0, 4)]
    with torch.no_grad():
        batch, lengths = encoder(*padded(clips))
        alone = torch.cat([encoder(*padded([c]))[0] for c in clips])
    assert lengths.tolist() == [1, 1, 1, 1]
    assert torch.allclose(batch, alone, atol=1e-5), (batch - alone).abs().max()
    # Each clip is repeat-padded from its own length: padding by zeros would change the embedding.
    assert (alone[0] - alone[3]).abs().max() > 1e-3


@pytest.mark.slow
def test_onnx_export_and_onnxruntime_parity(encoder, tmp_path: Path) -> None:
    from mos.export.onnx_io import export_torchscript

    path = tmp_path / "clap_audio.onnx"
    trace = padded([generated(1.5, 1), generated(2.5, 2)])
    export_torchscript(encoder, trace, path, 17, ["waveform", "lengths"], ["frames", "frame_lengths"],
                       {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                        "frames": {0: "batch"}, "frame_lengths": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # Lengths and batch sizes not traced: shorter, a full window, longer than a window.
    for clips in ([generated(0.8, 3), generated(10.0, 4), generated(5.1, 5)], [generated(12.0, 6)]):
        wave, lengths = padded(clips)
        got, got_lengths = session.run(None, {"waveform": wave.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            want, _ = encoder(wave, lengths)
        assert got.shape == (len(clips), 1, PROJECTION) and got_lengths.tolist() == [1] * len(clips)
        assert np.abs(got - want.numpy()).max() < 1e-4


# -- the text tower --------------------------------------------------------------------------------
def test_text_encoder_gives_one_clap_text_embedding_per_caption(clap_dir: Path, reference) -> None:
    _, model = reference
    enc = FrozenTextEncoder(str(clap_dir))
    assert enc.dim == PROJECTION
    feats = enc.encode(CAPTIONS)
    for caption, f in zip(CAPTIONS, feats):
        with torch.no_grad():
            want = model.get_text_features(**enc.tokenizer([caption], return_tensors="pt")).pooler_output
        assert f.shape == (1, PROJECTION)
        assert torch.allclose(f, want, atol=1e-5)


def test_text_onnx_and_tokenizer_json_through_the_torch_free_runtime(clap_dir: Path, tmp_path: Path) -> None:
    import onnx

    from mos.export.onnx_io import interface
    from mos.export.text import export_text
    from mos.runtime.session import SessionRunner
    from mos.runtime.text import TextEncoder

    max_tokens = 8  # the longest caption is truncated: both sides must agree on where
    enc = FrozenTextEncoder(str(clap_dir), max_tokens=max_tokens)
    model_path, tokenizer_path = export_text(enc, tmp_path, 17)
    # One pooled row per caption: the output declares it ([batch, 1, dim]), as the verifier asks.
    ins, outs = interface(onnx.load(str(model_path)))
    assert outs == {"text": ["batch", 1, PROJECTION]}
    assert ins == {"input_ids": ["batch", "tokens"], "attention_mask": ["batch", "tokens"]}
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    runtime = TextEncoder(SessionRunner(session), tokenizer_path, max_tokens)
    captions = [*CAPTIONS, "the sound of a cat"]
    assert runtime.ids(captions) == [enc.tokenize([c])["input_ids"][0].tolist() for c in captions]
    assert max(len(i) for i in runtime.ids(captions)) == max_tokens
    got = runtime.encode(captions)  # batched, padded here with id 0 (not RoBERTa's <pad>)
    for g, want in zip(got, enc.encode(captions)):
        assert g.shape == (1, PROJECTION)
        assert np.abs(g - want.numpy()).max() < 1e-4


@pytest.fixture(scope="module")
def pooled_bundle(clap_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small text model over the CLAP text tower (one pooled feature per caption), exported
    with --quantize int8."""
    from fixtures_export import SMALL, TARGETS

    from mos.export import export_bundle
    from mos.model import ModelConfig, MosModel, TargetSpec
    from mos.trainer.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("pooled")
    text = FrozenTextEncoder(str(clap_dir))
    torch.manual_seed(3)
    model = MosModel(ModelConfig(targets=[TargetSpec(**vars(t)) for t in TARGETS], text_encoder=str(clap_dir),
                                 text_dim=text.dim, text_encoder_sha256=text.sha256, **SMALL)).eval()
    save_checkpoint(root / "run" / "checkpoints" / "best.pt", model,
                    {"data": "synthetic", "validation_metrics": {}, "epoch": 0, "train_config": {}})
    report = export_bundle(root / "run", root / "bundle", quantize="int8", force=True)  # synthetic calibration: the int8 rule needs --force
    return root / "bundle", report


@pytest.mark.slow
def test_pooled_text_tower_gets_an_int8_text_model(pooled_bundle) -> None:
    """text.onnx of a pooled encoder declares its one row ([batch, 1, dim]); text.int8.onnx keeps
    exactly those dims and passes the export's interface check."""
    import onnx

    from mos.export.onnx_io import interface

    bundle, report = pooled_bundle
    meta = json.loads((bundle / "mos.json").read_text())
    assert meta["text"]["pooled"] is True
    assert meta["variants"].get("text_int8") == "text.int8.onnx", report.notes
    for name in ("text.onnx", "text.int8.onnx"):
        _, outs = interface(onnx.load(str(bundle / name)))
        assert outs == {"text": ["batch", 1, PROJECTION]}, name
    assert report.verify is not None and report.verify.ok


def test_interface_check_holds_int8_text_to_the_fp32_dims(pooled_bundle, tmp_path: Path) -> None:
    """A text.int8.onnx whose output dims differ from text.onnx's is still refused."""
    import onnx

    from mos.bundle import write_bundle_meta
    from mos.export.verify import verify_bundle

    bundle = Path(shutil.copytree(pooled_bundle[0], tmp_path / "b"))
    proto = onnx.load(str(bundle / "text.int8.onnx"))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "tokens"
    onnx.save(proto, str(bundle / "text.int8.onnx"))
    write_bundle_meta(bundle, json.loads((bundle / "mos.json").read_text()))
    report = verify_bundle(bundle, use_checkpoint=False, raise_on_failure=False)
    bad = [c.detail for c in report.failures]
    assert len(bad) == 1 and "text.int8.onnx: 'text' has dims ['batch', 'tokens', 24], expected ['batch', 1, 24]" in bad[0]


def test_score_int8_with_a_pooled_text_tower_uses_text_int8(pooled_bundle, tmp_path: Path) -> None:
    from fixtures_runtime import make_folder, read_csv_dicts
    from typer.testing import CliRunner

    from mos.audio import read_audio
    from mos.cli import app
    from mos.runtime import EngineOptions, ScoreEngine

    bundle = pooled_bundle[0]
    folder, captions = make_folder(tmp_path, 4)
    out = tmp_path / "int8.csv"
    result = CliRunner().invoke(app, ["score", str(folder), "--captions", str(captions), "--bundle", str(bundle),
                                      "--out", str(out), "--int8", "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = read_csv_dicts(out)
    got = np.array([[float(r["overall"]), float(r["textual"])] for r in rows])
    waves = [read_audio(folder / r["id"], 16000) for r in rows]
    caps = [r["caption"] for r in rows]
    int8 = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1, int8=True))
    np.testing.assert_allclose(got, int8.score_arrays(waves, caps), atol=2e-6)
    int8_audio_fp32_text = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1, int8=True))
    int8_audio_fp32_text.text = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1)).text
    assert float(np.abs(got - int8_audio_fp32_text.score_arrays(waves, caps)).max()) > 1e-6  # really int8 text


# -- refused directories ---------------------------------------------------------------------------
def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(MosError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_missing_or_partial_directory_is_a_one_line_error(clap_dir: Path, tmp_path: Path) -> None:
    one_line_error(resolve_audio_encoder, str(tmp_path / "nowhere"), match="no such directory")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(clap_dir / name, partial / name)
    one_line_error(resolve_audio_encoder, str(partial), match="no weights")
    one_line_error(FrozenTextEncoder, str(partial), match="no weights")
    # Weights present but without the audio tower (e.g. a text-only file): refused, not random.
    from safetensors.torch import load_file, save_file

    state = load_file(str(clap_dir / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("audio_")}, str(partial / "model.safetensors"))
    one_line_error(build_audio_encoder, str(partial), match="incomplete")
    save_file({k: v for k, v in state.items() if not k.startswith("text_")}, str(partial / "model.safetensors"))
    one_line_error(FrozenTextEncoder, str(partial), match="incomplete")


def test_a_fused_clap_model_is_refused(clap_dir: Path, tmp_path: Path) -> None:
    fused = tmp_path / "fused"
    shutil.copytree(clap_dir, fused)
    config = json.loads((fused / "config.json").read_text())
    config["audio_config"]["enable_fusion"] = True
    (fused / "config.json").write_text(json.dumps(config))
    msg = one_line_error(resolve_audio_encoder, str(fused), match="only unfused CLAP is supported")
    assert str(fused) in msg


def test_changed_extractor_settings_are_refused(clap_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "clap"
    shutil.copytree(clap_dir, other)
    pinned = resolve_audio_encoder(str(other)).sha256
    pre = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text(json.dumps({**pre, "frequency_min": 0}))
    one_line_error(build_audio_encoder, str(other), pinned, match="differ from the ones the model was trained with")


def test_mos_model_with_clap_audio_and_text(clap_dir: Path) -> None:
    """A pooled head over the CLAP audio and text embeddings: the frozen tower is built from the
    config (sha256-checked) and left out of the checkpoint state, which loads back."""
    from mos.model import ModelConfig, MosModel, TargetSpec

    info = resolve_audio_encoder(str(clap_dir))
    text = FrozenTextEncoder(str(clap_dir))
    cfg = ModelConfig(audio_encoder=str(clap_dir), audio_encoder_kind=info.kind, audio_encoder_sha256=info.sha256,
                      sample_rate=info.sample_rate, window_seconds=info.window_seconds, head="pooled",
                      text_encoder=str(clap_dir), text_dim=text.dim, text_encoder_sha256=text.sha256,
                      targets=[TargetSpec("score", 0.0, 10.0, 5.0, 2.0)])
    torch.manual_seed(0)
    model = MosModel(cfg).eval()
    wave, lengths = padded([generated(2.0, 1), generated(6.0, 2)])
    feats = text.encode(CAPTIONS[:2])
    text_batch = torch.stack(feats)
    text_lengths = torch.tensor([f.shape[0] for f in feats])
    with torch.no_grad():
        scores = model.scores(wave, lengths, text_batch, text_lengths)
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()
    state = model.checkpoint_state()
    assert not any(k.startswith("audio_encoder.backbone.") for k in state)
    again = MosModel(cfg).eval()
    again.load_checkpoint_state(state)
    with torch.no_grad():
        assert torch.allclose(again.scores(wave, lengths, text_batch, text_lengths), scores, atol=1e-6)


def test_window_follows_the_extractors_max_length(clap_dir: Path, tmp_path: Path) -> None:
    from transformers import ClapFeatureExtractor

    other = tmp_path / "clap"
    shutil.copytree(clap_dir, other)
    pre = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text(json.dumps({**pre, "max_length_s": 4}))
    assert resolve_audio_encoder(str(other)).window_seconds == 4.0
    x = generated(1.7, seed=9)
    ref = extractor_mel(ClapFeatureExtractor.from_pretrained(str(other)), x)
    ours = our_mel(build_audio_encoder(str(other)), x)
    assert ours.shape == ref.shape == (401, 64)
    assert np.abs(ours - ref).max() < DB_TOL_GENERATED


@pytest.mark.parametrize("change", [{"max_length_s": "ten"}, {"hop_length": 0}, {"padding": "mirror"}, None])
def test_bad_extractor_settings_are_a_one_line_error(clap_dir: Path, tmp_path: Path, change: dict | None) -> None:
    other = tmp_path / "clap"
    shutil.copytree(clap_dir, other)
    pre = json.loads((other / "preprocessor_config.json").read_text())
    text = "{not json" if change is None else json.dumps({**pre, **change})
    (other / "preprocessor_config.json").write_text(text)
    msg = one_line_error(resolve_audio_encoder, str(other), match="preprocessor_config.json")
    assert ("not a readable JSON file" in msg) if change is None else (next(iter(change)) in msg)
