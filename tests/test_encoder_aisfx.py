"""aisfx with its real weights (the PyPI package, installed with --no-deps): the in-graph
spectrogram against librosa as the package calls it, the whole encoder against the package's own
code path (its spectrogram function, normalisation, blocking and network, fed the time x mel
layout), block counts, padding invariance, ONNX parity, one-line errors, and
`mos train --audio-encoder aisfx` -> export -> torch-free score equal to PyTorch."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
if importlib.util.find_spec("aisfx") is None:
    pytest.skip("aisfx is not installed (pip install --no-deps aisfx==0.1.2)", allow_module_level=True)
librosa = pytest.importorskip("librosa")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from mos.cli import app  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.model.encoders import aisfx, build_audio_encoder, resolve_audio_encoder  # noqa: E402

from fixtures_encoders import assert_onnx_export_matches  # noqa: E402
from fixtures_mushra import REAL_MUSHRA  # noqa: E402
from fixtures_train import TABLE_COLUMNS, make_table  # noqa: E402

RATE = aisfx.SAMPLE_RATE
# Measured: max |ours - librosa| 2e-6 to 7e-6 on the normalised spectrogram (values 0 to ~1),
# embeddings within 2e-6 to 3.5e-6 of the package's pipeline (embedding values 0 to ~7), on
# generated clips and on real speech.
SPEC_TOL = 5e-5
EMB_TOL = 5e-5


def package_module(relative: str) -> ModuleType:
    """A module file of the installed package, loaded alone (the package's __init__ imports
    code written for numpy 1.23 / librosa 0.9, which this environment does not have)."""
    root = Path(next(iter(importlib.util.find_spec("aisfx").submodule_search_locations)))
    spec = importlib.util.spec_from_file_location(f"aisfx_{relative.replace('/', '_')}", root / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def encoder():
    return build_audio_encoder("aisfx").eval()


@pytest.fixture(scope="module")
def package_net():
    """The package's own network class with the checkpoint's weights."""
    cnn2d = package_module("models/cnn2d.py")
    weights = aisfx.load_weights(aisfx.checkpoint_path())
    net = cnn2d.EmbeddingNet("max", 3, 1, 64)
    net.load_state_dict(weights)
    return net.eval()


def generated(seconds: float, seed: int = 0) -> np.ndarray:
    """A chirp, a gated tone and noise at 44.1 kHz, peak below 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    x = 0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t) + 0.2 * np.sin(2 * np.pi * 2500 * t) * (t % 0.4 < 0.15)
    return (x + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def clips() -> dict[str, np.ndarray]:
    out = {"5.2 s": generated(5.2), "1.1 s (< one block)": generated(1.1, seed=1)}
    if REAL_MUSHRA is not None:
        from mos.audio import read_audio

        for wav in sorted((REAL_MUSHRA / "audio").glob("*/*.wav"))[:2]:
            out[wav.name] = read_audio(str(wav), RATE)
    return out


def package_embeddings(tmp_path: Path, x: np.ndarray, net) -> np.ndarray:
    """The package's pipeline on a 44.1 kHz wav: its librosa spectrogram function, transposed to
    the paper's time x mel layout, its 'original' normalisation, its blocking (partial blocks
    dropped) and its network."""
    spectrogram = package_module("spectrogram/spectrogram_librosa.py")
    pre = package_module("preprocessing.py")
    wav = tmp_path / "clip.wav"
    sf.write(wav, x, RATE, subtype="FLOAT")
    spec = spectrogram.compute_spectrogram(str(wav), sr=RATE, block_size=aisfx.N_FFT, hop_size=aisfx.HOP,
                                           n_mels=aisfx.N_MELS, f_min=aisfx.F_MIN, f_max=aisfx.F_MAX).T
    spec = pre.spectrogram_normalize(spec, spec_norm="original")
    # The package's hop: compute_hopSize(100, 0.5) = 50 (it asserts the clip is longer than one
    # hop, so it refuses clips under ~1.2 s that its blocking would pad to one block).
    blocks = pre.blocking(spec, aisfx.BLOCK, aisfx.BLOCK_HOP, drop_partial_block=True)
    with torch.no_grad():
        return net(torch.tensor(blocks, dtype=torch.float32)).numpy()


def test_resolve_reads_the_installed_package() -> None:
    info = resolve_audio_encoder("aisfx")
    assert (info.kind, info.sample_rate, info.out_dim, info.window_seconds) == ("aisfx", 44100, 512, None)
    assert info.padding_invariant and 4_000_000 < info.parameters < 5_000_000
    assert Path(info.source).name == "checkpoint.pth" and len(info.sha256) == 64


@pytest.mark.slow
def test_spectrogram_matches_librosa_as_the_package_calls_it(encoder) -> None:
    for name, x in clips().items():
        ours, frames = encoder.front_end.spectrogram(torch.from_numpy(x)[None], torch.tensor([x.size]))
        y = x / np.max(np.abs(x))
        mel = librosa.feature.melspectrogram(y=y, sr=RATE, n_mels=96, norm=1.0, fmin=0.0, fmax=22050.0, htk=True,
                                             power=2.0, hop_length=1024, win_length=2048, pad_mode="constant")
        ref = (np.log10(mel * 1e4 + 1) / aisfx.SPEC_MAX).T
        assert int(frames[0]) == ref.shape[0] == ours.shape[1], name
        assert np.max(np.abs(ours[0].numpy() - ref)) < SPEC_TOL, name


@pytest.mark.slow
def test_embeddings_match_the_package_pipeline(encoder, package_net, tmp_path: Path) -> None:
    for name, x in clips().items():
        expected = package_embeddings(tmp_path, x, package_net)
        with torch.no_grad():
            frames, counts = encoder(torch.from_numpy(x)[None], torch.tensor([x.size]))
        assert int(counts[0]) == expected.shape[0], name
        np.testing.assert_allclose(frames[0].numpy(), expected, atol=EMB_TOL, rtol=0, err_msg=name)


@pytest.mark.parametrize("frames, blocks", [(1, 1), (99, 1), (100, 1), (149, 1), (150, 2), (431, 7)])
def test_block_counts_follow_the_package(frames: int, blocks: int) -> None:
    pre = package_module("preprocessing.py")
    assert int(aisfx.block_counts(torch.tensor(frames))) == blocks
    assert pre.blocking(np.zeros((frames, 2)), 100, 50, drop_partial_block=True).shape[0] == blocks


def test_a_clip_scores_the_same_alone_and_padded_in_a_batch(encoder) -> None:
    short, long = generated(2.7, seed=3), generated(6.0, seed=4)
    batch = np.zeros((2, long.size), np.float32)
    batch[0, : short.size], batch[1] = short, long
    with torch.no_grad():
        alone, n_alone = encoder(torch.from_numpy(short)[None], torch.tensor([short.size]))
        both, n_both = encoder(torch.from_numpy(batch), torch.tensor([short.size, long.size]))
    assert int(n_both[0]) == int(n_alone[0]) == 1 and int(n_both[1]) == 4
    assert torch.allclose(both[0, :1], alone[0], atol=1e-5)
    assert torch.all(both[0, 1:] == 0)  # past the short clip's blocks: zeros
    assert torch.allclose(encoder(torch.from_numpy(long * 0.1)[None], torch.tensor([long.size]))[0],
                          both[1:], atol=1e-4)  # peak-normalised: the level does not matter


@pytest.mark.slow
def test_onnx_export_matches_pytorch_at_other_batch_sizes_and_lengths(encoder, tmp_path: Path) -> None:
    assert_onnx_export_matches(encoder, tmp_path / "aisfx.onnx", generated, RATE, 3.0, [[1.5], [4.4, 2.0, 7.0]], "blocks")


def test_missing_package_and_broken_checkpoint_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "checkpoint.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MosError, match=r"checkpoint\.pth: not a readable aisfx checkpoint") as err:
        aisfx.load_weights(broken)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MosError, match=r"pip install --no-deps aisfx==0\.1\.2"):
        resolve_audio_encoder("aisfx")


@pytest.mark.slow
def test_train_export_score_torch_free_matches_pytorch(tmp_path: Path) -> None:
    """The real aisfx weights behind a fusion head over its blocks: `mos train` caches the
    blocks' embeddings, `mos export` puts the front end in the graph, `mos score` (ONNX Runtime)
    gives each clip PyTorch's score; clips of 1.2 to 3.4 s (one to two blocks) at 16 kHz are
    resampled to 44.1 kHz on the way in."""
    table = make_table(tmp_path / "data", n_signals=4, seconds=1.2)
    for k, wav in enumerate(sorted((tmp_path / "data" / "audio").glob("stim_0[13]/*.wav"))):
        x, rate = sf.read(wav, dtype="float32")
        sf.write(wav, np.tile(x, 3)[: len(x) + 4000 * (k + 1)], rate)
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "sfx", "--epochs", "2", "--batch-size", "8",
                                 "--text-encoder", "none", "--audio-encoder", "aisfx", "--head", "fusion",
                                 "--feature-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(runs / "sfx")])
    assert result.exit_code == 0, result.output
    meta = json.loads((runs / "sfx" / "bundle" / "mos.json").read_text())
    assert meta["audio"]["encoder"]["kind"] == "aisfx" and meta["sample_rate"] == 44100
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(tmp_path / "data" / "audio"), "--bundle", str(runs / "sfx" / "bundle"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}

    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    model, _ = load_model(runs / "sfx")
    scores = []
    for wav in sorted((tmp_path / "data" / "audio").glob("*/*.wav")):
        x = torch.from_numpy(read_audio(str(wav), RATE)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(x, torch.tensor([x.shape[1]]))[0, 0])
        assert rows[wav.resolve()] == pytest.approx(expected, abs=1e-3)
        scores.append(expected)
    assert len(scores) == 16 and np.std(scores) > 0
