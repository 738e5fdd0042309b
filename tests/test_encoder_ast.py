"""The Audio Spectrogram Transformer from a local directory (a tiny random ASTModel saved here with
an ASTFeatureExtractor, no download): the in-graph Kaldi fbank against ASTFeatureExtractor on
generated and real audio (and against torchaudio's fbank in float64), the encoder against
ASTModel's pooler_output, padding invariance, ONNX export and onnxruntime parity, an
*ForAudioClassification directory, refused directories, and MosModel with the pooled head."""

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

from fixtures_encoders import HIDDEN, make_tiny_ast  # noqa: E402

RATE = 16000
FRAMES = 1024
WINDOW = (FRAMES - 1) * 160 + 400  # 164080 samples, 10.255 s: exactly 1024 fbank frames
# Measured, in the normalised units the model sees ((log-energy - mean) / (2 * std), 1 unit =
# 9.14 in natural log): max |ours - extractor| 3.1e-4 on these generated clips (0.03 s to 12 s),
# largest in the lowest mel bins (a few DFT bins each, where DC removal and pre-emphasis leave
# little energy); the extractor computes in float32: against torchaudio's fbank in float64 ours
# is within 8.2e-5 and the extractor within 3.2e-4. On real speech (MUSHRA clips) 2.6e-5.
# A clip shorter than one 25 ms frame is all padding here (the extractor raises on it).
TOL_EXTRACTOR = 1e-3
TOL_FLOAT64 = 2e-4


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_ast(tmp_path_factory.mktemp("ast") / "tiny-ast")


@pytest.fixture(scope="module")
def reference(ast_dir: Path):
    from transformers import ASTFeatureExtractor, ASTModel

    model = ASTModel.from_pretrained(str(ast_dir), attn_implementation="eager").eval()
    return ASTFeatureExtractor.from_pretrained(str(ast_dir)), model


@pytest.fixture(scope="module")
def encoder(ast_dir: Path):
    return build_audio_encoder(str(ast_dir)).eval()


def generated(seconds: float, seed: int = 0) -> np.ndarray:
    """A chirp, a gated 3 kHz tone and noise: broadband audio at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    x = 0.3 * np.sin(2 * np.pi * (200 + 800 * t) * t) + 0.2 * np.sin(2 * np.pi * 3000 * t) * (t % 0.5 < 0.2)
    return (x + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def extractor_fbank(extractor, x: np.ndarray) -> np.ndarray:
    return extractor(x, sampling_rate=RATE, return_tensors="np")["input_values"][0]


def our_fbank(encoder, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return encoder.front_end(torch.from_numpy(x)[None], torch.tensor([x.size]))[0].numpy()


def padded(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    wave = np.zeros((len(clips), max(c.size for c in clips)), dtype=np.float32)
    for i, c in enumerate(clips):
        wave[i, : c.size] = c
    return torch.from_numpy(wave), torch.tensor([c.size for c in clips], dtype=torch.int64)


@pytest.mark.slow
def test_resolve_reads_rate_window_and_pins_files(ast_dir: Path) -> None:
    info = resolve_audio_encoder(str(ast_dir))
    assert (info.kind, info.sample_rate, info.out_dim) == ("ast", RATE, HIDDEN)
    assert info.window_seconds * RATE == pytest.approx(WINDOW) and round(info.window_seconds * RATE) == WINDOW
    assert info.padding_invariant and info.sha256 == encoder_sha256(ast_dir)


@pytest.mark.parametrize("seconds", [0.03, 0.5, 1.0, 3.3, WINDOW / RATE, 12.0])
def test_front_end_matches_ast_feature_extractor(encoder, reference, seconds: float) -> None:
    """Shorter clips are zero-padded after their own frames (then normalised), longer ones cut."""
    extractor, _ = reference
    x = generated(seconds, seed=int(seconds * 100))
    ref = extractor_fbank(extractor, x)
    ours = our_fbank(encoder, x)
    assert ours.shape == ref.shape == (FRAMES, 128)
    assert np.abs(ours - ref).max() < TOL_EXTRACTOR


def test_front_end_against_kaldi_fbank_in_float64(encoder) -> None:
    import torchaudio.compliance.kaldi as kaldi

    x = generated(12.0, seed=12)
    exact = kaldi.fbank(torch.from_numpy(x).double()[None], sample_frequency=RATE, window_type="hanning",
                        num_mel_bins=128)[:FRAMES].numpy()
    assert exact.shape == (FRAMES, 128)
    assert np.abs(our_fbank(encoder, x) - (exact + 4.2677393) / (2 * 4.5689974)).max() < TOL_FLOAT64


def test_front_end_matches_on_real_speech(encoder, reference) -> None:
    from fixtures_mushra import _find_real

    from mos.audio import read_audio

    root = _find_real()
    if root is None:
        pytest.skip("the real MUSHRA clips are not on this machine")
    extractor, _ = reference
    for path in sorted((root / "audio").glob("stim_0[1-3]/*.wav"))[:6]:
        x = read_audio(path, RATE)
        assert np.abs(our_fbank(encoder, x) - extractor_fbank(extractor, x)).max() < TOL_EXTRACTOR, path


def test_do_normalize_off_gives_the_raw_log_fbank(ast_dir: Path, tmp_path: Path) -> None:
    from transformers import ASTFeatureExtractor

    other = tmp_path / "ast"
    shutil.copytree(ast_dir, other)
    pre = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text(json.dumps({**pre, "do_normalize": False}))
    x = generated(2.0, seed=4)
    ref = extractor_fbank(ASTFeatureExtractor.from_pretrained(str(other)), x)
    ours = our_fbank(build_audio_encoder(str(other)), x)
    assert ref.min() < -10.0  # really un-normalised (log energies; the padding is 0)
    assert np.abs(ours - ref).max() < TOL_EXTRACTOR * 2 * 4.5689974


def test_encoder_matches_ast_model_pooler_output(encoder, reference) -> None:
    extractor, model = reference
    for seconds in (0.6, 4.2, WINDOW / RATE):
        x = generated(seconds, seed=7)
        with torch.no_grad():
            want = model(**extractor(x, sampling_rate=RATE, return_tensors="pt")).pooler_output
            frames, frame_lengths = encoder(torch.from_numpy(x)[None], torch.tensor([x.size]))
        assert frames.shape == (1, 1, HIDDEN) and frame_lengths.tolist() == [1]
        assert torch.allclose(frames[:, 0], want, atol=1e-5), (frames[:, 0] - want).abs().max()


def test_a_clip_scores_the_same_alone_or_padded_in_a_batch(encoder) -> None:
    clips = [generated(1.3, 1), generated(12.0, 2), generated(0.02, 3), generated(4.0, 4)]
    with torch.no_grad():
        batch, lengths = encoder(*padded(clips))
        alone = torch.cat([encoder(*padded([c]))[0] for c in clips])
        # The batch padding must not reach the fbank: zeroing past each length is not enough
        # (frames that overlap the clip's end would differ), frames past its own are the extractor's.
        fbank = encoder.front_end(*padded(clips))
    assert lengths.tolist() == [1, 1, 1, 1]
    assert torch.allclose(batch, alone, atol=1e-5), (batch - alone).abs().max()
    pad = (0.0 + 4.2677393) / (2 * 4.5689974)  # the extractor's zero fbank, normalised
    assert (fbank[0, 128:] == pad).all() and (fbank[0, 127] != pad).any()  # 1.3 s: 128 frames of its own
    assert (fbank[2] == pad).all()  # 0.02 s: shorter than one 25 ms frame
    assert (alone[0] - alone[3]).abs().max() > 1e-3


def test_onnx_export_and_onnxruntime_parity(encoder, tmp_path: Path) -> None:
    from mos.export.onnx_io import export_torchscript

    path = tmp_path / "ast_audio.onnx"
    trace = padded([generated(1.5, 1), generated(2.5, 2)])
    export_torchscript(encoder, trace, path, 17, ["waveform", "lengths"], ["frames", "frame_lengths"],
                       {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                        "frames": {0: "batch"}, "frame_lengths": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # Lengths and batch sizes not traced: shorter than a frame, shorter, a full window, longer.
    for clips in ([generated(0.02, 3), generated(WINDOW / RATE, 4), generated(5.1, 5)], [generated(12.0, 6)]):
        wave, lengths = padded(clips)
        got, got_lengths = session.run(None, {"waveform": wave.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            want, _ = encoder(wave, lengths)
        assert got.shape == (len(clips), 1, HIDDEN) and got_lengths.tolist() == [1] * len(clips)
        assert np.abs(got - want.numpy()).max() < 1e-4


def test_the_front_end_kept_fp32_by_int8_ends_at_the_backbone(encoder, tmp_path: Path) -> None:
    """int8 and fp16 keep the front end fp32 (mos.export.graph.front_end). AST's backbone reads the
    log-mel's shape (the batch size of its CLS token): following that Shape took the whole
    transformer into the front end, so int8 quantized none of its MatMuls."""
    import onnx

    from mos.export.graph import front_end
    from mos.export.onnx_io import export_torchscript

    path = tmp_path / "ast_audio.onnx"
    export_torchscript(encoder, padded([generated(1.5, 1), generated(2.5, 2)]), path, 17, ["waveform", "lengths"],
                       ["frames", "frame_lengths"], {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                                     "frames": {0: "batch"}, "frame_lengths": {0: "batch"}})
    model = onnx.load(str(path))
    fe = front_end(model)
    by_name = {n.name: n for n in model.graph.node}
    assert len(fe.dft_convs) == 1 and fe.matmuls  # the DFT and mel MatMuls stay fp32
    # Up to the patch embedding's Conv (its input's Unsqueeze and Transpose are layout), no further.
    assert not [n for n in fe.nodes if "backbone" in n and "/patch_embeddings/" not in n]
    backbone_matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul" and "backbone" in n.name]
    assert len(backbone_matmuls) >= 6 * 2 and not set(backbone_matmuls) & set(fe.matmuls)  # q, k, v, out, 2 FFN per layer
    assert all(by_name[m].op_type == "MatMul" for m in fe.matmuls)


def test_a_classification_directory_gives_its_base_model(tmp_path: Path, reference) -> None:
    """MIT/ast-finetuned-audioset-* are ASTForAudioClassification: the classifier is ignored."""
    from transformers import ASTForAudioClassification

    extractor, _ = reference
    model_dir = make_tiny_ast(tmp_path / "ast-cls", head=True)
    enc = build_audio_encoder(str(model_dir)).eval()
    full = ASTForAudioClassification.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    x = generated(3.0, seed=8)
    with torch.no_grad():
        want = full.audio_spectrogram_transformer(**extractor(x, sampling_rate=RATE, return_tensors="pt")).pooler_output
        got, _ = enc(torch.from_numpy(x)[None], torch.tensor([x.size]))
    assert torch.allclose(got[:, 0], want, atol=1e-5)


# -- refused directories ---------------------------------------------------------------------------
def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(MosError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_missing_or_partial_directory_is_a_one_line_error(ast_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copyfile(ast_dir / name, partial / name)
    assert str(partial) in one_line_error(resolve_audio_encoder, str(partial), match="no weights")
    from safetensors.torch import load_file, save_file

    state = load_file(str(ast_dir / "model.safetensors"))
    save_file({k: v for k, v in state.items() if "encoder.layer.1." not in k}, str(partial / "model.safetensors"))
    one_line_error(build_audio_encoder, str(partial), match="incomplete")


@pytest.mark.parametrize("change, message", [
    (None, "not a readable JSON file"),
    ({"sampling_rate": 22050}, "sampling_rate"),
    ({"max_length": 512}, "max_length 512 differs from the model's 1024"),
    ({"num_mel_bins": 64}, "num_mel_bins 64 differs"),
    ({"std": 0}, "std"),
    ({"mean": "x"}, "mean"),
])
def test_bad_preprocessor_config_is_a_one_line_error(ast_dir: Path, tmp_path: Path, change, message: str) -> None:
    other = tmp_path / "ast"
    shutil.copytree(ast_dir, other)
    pre = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text("{not json" if change is None else json.dumps({**pre, **change}))
    msg = one_line_error(resolve_audio_encoder, str(other), match=message)
    assert "preprocessor_config.json" in msg


def test_without_a_preprocessor_config_the_extractor_defaults_apply(ast_dir: Path, tmp_path: Path, encoder) -> None:
    other = tmp_path / "ast"
    shutil.copytree(ast_dir, other)
    (other / "preprocessor_config.json").unlink()
    x = generated(1.0, seed=2)
    assert np.array_equal(our_fbank(build_audio_encoder(str(other)), x), our_fbank(encoder, x))


def test_mos_model_with_ast_audio(ast_dir: Path) -> None:
    """A pooled head over the AST embedding: the frozen backbone is left out of the checkpoint."""
    from mos.model import ModelConfig, MosModel, TargetSpec

    info = resolve_audio_encoder(str(ast_dir))
    cfg = ModelConfig(audio_encoder=str(ast_dir), audio_encoder_kind=info.kind, audio_encoder_sha256=info.sha256,
                      sample_rate=info.sample_rate, window_seconds=info.window_seconds, head="pooled",
                      text_encoder="none", targets=[TargetSpec("score", 0.0, 10.0, 5.0, 2.0)])
    torch.manual_seed(0)
    model = MosModel(cfg).eval()
    wave, lengths = padded([generated(2.0, 1), generated(6.0, 2)])
    with torch.no_grad():
        scores = model.scores(wave, lengths)
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()
    state = model.checkpoint_state()
    assert not any(k.startswith("audio_encoder.backbone.") for k in state)
