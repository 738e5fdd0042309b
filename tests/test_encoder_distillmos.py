"""Distill-MOS with its real weights (the PyPI package, installed with --no-deps): our network and
in-graph front end against the package's own forward pass (imported here only, as the reference;
it needs xls_r_sqa), embeddings and 1-5 scores; padding invariance; one-line errors; and
`mos export --pretrained distillmos` -> torch-free `mos score` equal to the package."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
if importlib.util.find_spec("distillmos") is None:
    pytest.skip("distillmos is not installed (pip install --no-deps distillmos==0.9.1)", allow_module_level=True)

from typer.testing import CliRunner  # noqa: E402

from mos.cli import app  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.model import ModelConfig, MosModel  # noqa: E402
from mos.model.encoders import build_audio_encoder, distillmos, resolve_audio_encoder  # noqa: E402

from fixtures_mushra import REAL_MUSHRA  # noqa: E402

RATE = distillmos.SAMPLE_RATE
# Measured: embeddings within 8e-6 of the package's (values up to ~3), scores within 2e-6.
EMB_TOL = 1e-4
SCORE_TOL = 1e-4
needs_reference = pytest.mark.skipif(
    importlib.util.find_spec("xls_r_sqa") is None,
    reason="the package's own forward pass (the reference) needs xls_r_sqa: pip install --no-deps xls-r-sqa==0.1.0")


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with syllable-rate amplitude modulation and a little noise, 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * (2.5 + seed) * t) ** 2)
    return (0.2 * x / np.abs(x).max() + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def clips(tmp_path: Path) -> dict[str, np.ndarray]:
    """Clips written to wav and read back (what a user's files give), real speech when present."""
    out = {"2.0 s": speechlike(2.0), "7.68 s (one window)": speechlike(7.68, seed=1), "0.4 s": speechlike(0.4, seed=2)}
    if REAL_MUSHRA is not None:
        from mos.audio import read_audio

        for wav in sorted((REAL_MUSHRA / "audio").glob("*/*.wav"))[:2]:
            out[f"{wav.parent.name}/{wav.name}"] = read_audio(str(wav), RATE)
    read = {}
    for i, (name, x) in enumerate(out.items()):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, x, RATE, subtype="FLOAT")
        read[name] = sf.read(path, dtype="float32")[0]
    return read


@pytest.fixture(scope="module")
def encoder():
    return build_audio_encoder("distillmos").eval()


@pytest.fixture(scope="module")
def package_model():
    """The package's own model (its forward pass: padding, windows, normalisation, STFT, network)."""
    from distillmos import ConvTransformerSQAModel

    return ConvTransformerSQAModel().eval()


def package_outputs(model, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The package's pooled embedding (the input of its last linear layer) and its 1-5 score."""
    seen = {}
    hook = model.transformer_pool_attn.pool.linear3.register_forward_hook(lambda m, i, o: seen.update(emb=i[0]))
    try:
        with torch.no_grad():
            score = float(model(torch.from_numpy(x)[None])[0, 0])
    finally:
        hook.remove()
    return seen["emb"][0].numpy(), score


def test_resolve_reads_the_installed_package() -> None:
    info = resolve_audio_encoder("distillmos")
    assert (info.kind, info.sample_rate, info.out_dim, info.window_seconds) == ("distillmos", 16000, 200, 7.68)
    assert info.padding_invariant and 4_000_000 < info.parameters < 5_000_000
    assert Path(info.source).name == "distill_mos_v7.pt" and len(info.sha256) == 64
    assert info.code_version == f"distillmos.v{distillmos.FEATURES_VERSION}"


@needs_reference
@pytest.mark.slow
def test_embeddings_and_scores_match_the_package(encoder, package_model, tmp_path: Path) -> None:
    for name, x in clips(tmp_path).items():
        emb, score = package_outputs(package_model, x)
        with torch.no_grad():
            frames, counts = encoder(torch.from_numpy(x)[None], torch.tensor([x.size]))
            ours = float(encoder.backbone.mos(frames[:, 0])[0])
        assert frames.shape == (1, 1, 200) and int(counts[0]) == 1, name
        np.testing.assert_allclose(frames[0, 0].numpy(), emb, atol=EMB_TOL, rtol=0, err_msg=name)
        assert ours == pytest.approx(score, abs=SCORE_TOL), name
        assert 1.0 <= ours <= 5.0


@needs_reference
@pytest.mark.slow
def test_a_long_clip_gives_its_first_window(encoder, package_model) -> None:
    x = speechlike(9.5, seed=3)
    emb, _ = package_outputs(package_model, x[: distillmos.WINDOW])
    with torch.no_grad():
        frames, _ = encoder(torch.from_numpy(x)[None], torch.tensor([x.size]))
    np.testing.assert_allclose(frames[0, 0].numpy(), emb, atol=EMB_TOL, rtol=0)


@pytest.mark.slow
def test_a_clip_gives_the_same_alone_and_padded_in_a_batch(encoder) -> None:
    short, long = speechlike(2.7, seed=4), speechlike(6.0, seed=5)
    batch = np.zeros((2, long.size), np.float32)
    batch[0, : short.size], batch[1] = short, long
    batch[0, short.size:] = 0.5  # past its length the batch holds anything: the encoder masks it
    with torch.no_grad():
        alone, _ = encoder(torch.from_numpy(short)[None], torch.tensor([short.size]))
        both, _ = encoder(torch.from_numpy(batch), torch.tensor([short.size, long.size]))
        quiet, _ = encoder(torch.from_numpy(long * 0.1)[None], torch.tensor([long.size]))
    assert torch.allclose(both[0], alone[0], atol=1e-5)
    assert torch.allclose(quiet[0], both[1], atol=1e-4)  # peak-normalised: the level does not matter


def test_missing_package_and_broken_checkpoint_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "distill_mos_v7.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MosError, match=r"distill_mos_v7\.pt: not a readable Distill-MOS checkpoint") as err:
        distillmos.load_weights(broken)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MosError, match=r"pip install --no-deps distillmos==0\.9\.1") as err:
        resolve_audio_encoder("distillmos")
    assert "\n" not in str(err.value)


def test_a_sigmoid_head_output_lies_on_the_targets_range() -> None:
    from mos.model.config import TargetSpec

    cfg = ModelConfig(text_encoder="none", head="pooled", head_layers=(), head_output="sigmoid",
                      targets=[TargetSpec("mos", 1.0, 5.0, 3.0, 0.5)])
    model = MosModel(cfg).eval()
    raw = torch.tensor([[[-50.0]], [[0.0]], [[50.0]]])
    assert model.to_scale(model.normalised(raw), clamp=False)[:, 0].tolist() == pytest.approx([1.0, 3.0, 5.0])
    with pytest.raises(MosError, match="head output 'tanh'"):
        MosModel(ModelConfig(text_encoder="none", head_output="tanh"))


@pytest.mark.slow
def test_pretrained_refuses_unknown_names_and_missing_out(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--pretrained", "nisqa", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--pretrained 'nisqa': expected distillmos" in result.output
    result = runner.invoke(app, ["export", "--pretrained", "distillmos"])
    assert result.exit_code == 2 and "--out DIR" in result.output


@needs_reference
@pytest.mark.slow
def test_pretrained_bundle_scores_like_the_package(package_model, tmp_path: Path) -> None:
    """`mos export --pretrained distillmos` writes a verified bundle; `mos score` (ONNX Runtime)
    gives the package's score on clips up to one window (7.68 s)."""
    runner = CliRunner()
    bundle = tmp_path / "distillmos"
    result = runner.invoke(app, ["export", "--pretrained", "distillmos", "--out", str(bundle)])
    assert result.exit_code == 0, result.output
    meta = json.loads((bundle / "mos.json").read_text())
    assert [t["name"] for t in meta["targets"]] == ["mos"] and meta["targets"][0]["low"] == 1.0
    assert meta["audio"]["encoder"]["kind"] == "distillmos" and meta["window_seconds"] == pytest.approx(7.68)
    audio = tmp_path / "audio"
    audio.mkdir()
    expected, embedded = {}, {}
    for i, (name, x) in enumerate(clips(tmp_path).items()):
        path = audio / f"c{i}.wav"
        sf.write(path, x, RATE, subtype="FLOAT")
        embedded[path.name], expected[path.name] = package_outputs(package_model, x)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(audio), "--bundle", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = {Path(r["path"]).name: float(r["mos"]) for r in csv.DictReader(out.open())}
    assert set(got) == set(expected)
    for name, score in expected.items():
        assert got[name] == pytest.approx(score, abs=1e-3), name
    assert np.std(list(got.values())) > 0.05
    result = runner.invoke(app, ["export", "--check", str(bundle)])
    assert result.exit_code == 0, result.output
    # a teacher for `mos distill`: its pooled embedding is the package's (clips up to one window)
    from mos.audio import read_audio
    from mos.distill.teacher import load_teacher
    from mos.runtime.engine import ScoreEngine

    teacher = load_teacher(bundle)
    assert teacher.bundle.embedding_dim == 200
    short = [n for n in embedded if sf.info(audio / n).duration <= 7.68]
    _, emb = ScoreEngine(teacher.bundle).embed_arrays([read_audio(audio / n, RATE) for n in short], [None] * len(short))
    for name, e in zip(short, emb):
        assert np.allclose(e, embedded[name], atol=2e-3 * max(1.0, float(np.abs(embedded[name]).max()))), name


@pytest.mark.slow
def test_train_export_score_torch_free_matches_pytorch(tmp_path: Path) -> None:
    """A pooled head trained on Distill-MOS embeddings: `mos train` caches them (keyed on the
    family's FEATURES_VERSION), `mos export` puts the front end in the graph, and `mos score`
    (ONNX Runtime) gives each clip PyTorch's score."""
    from fixtures_train import TABLE_COLUMNS, make_table

    table = make_table(tmp_path / "data", n_signals=4, seconds=1.2)
    runner = CliRunner()
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "dm", "--epochs", "2", "--batch-size", "8",
                                 "--text-encoder", "none", "--audio-encoder", "distillmos", "--head", "pooled",
                                 "--feature-cache", str(cache)])
    assert result.exit_code == 0, result.output
    assert any(f"distillmos.v{distillmos.FEATURES_VERSION}" in p.name for p in cache.rglob("*")), \
        sorted(p.name for p in cache.rglob("*"))
    result = runner.invoke(app, ["export", str(runs / "dm")])
    assert result.exit_code == 0, result.output
    meta = json.loads((runs / "dm" / "bundle" / "mos.json").read_text())
    assert meta["audio"]["encoder"]["kind"] == "distillmos" and meta["window_seconds"] == pytest.approx(7.68)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(tmp_path / "data" / "audio"), "--bundle", str(runs / "dm" / "bundle"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}

    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    model, _ = load_model(runs / "dm")
    wavs = sorted((tmp_path / "data" / "audio").glob("*/*.wav"))
    assert len(wavs) == len(rows) == 16
    for wav in wavs:
        x = torch.from_numpy(read_audio(str(wav), RATE)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(x, torch.tensor([x.shape[1]]))[0, 0])
        assert rows[wav.resolve()] == pytest.approx(expected, abs=1e-3)
