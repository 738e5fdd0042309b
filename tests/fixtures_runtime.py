"""Fixtures for the runtime tests: random-weight models exported with mos.export, audio helpers.

Import the fixtures into a test module (`from fixtures_runtime import text_bundle, ...`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# A small model keeps the hour-long-file and parity tests quick; the interface is the real one.
SMALL = dict(channels=(32, 48, 64, 64), hidden=64, attention_heads=4)
WORDS = (
    "a soft piano melody with gentle rain and distant thunder over calm ocean waves while birds sing "
    "and a loud guitar plays over fast drums"
).split()


@dataclass
class ExportedBundle:
    """A bundle exported by mos.export.export_bundle plus the checkpoint it came from."""

    path: Path
    checkpoint: Path
    targets: list[str]
    uses_text: bool


def _export(root: Path, name: str, targets, text_encoder: str, quantize: str | None,
            **model: object) -> ExportedBundle:
    import torch

    from mos.export import export_bundle
    from mos.model import ModelConfig, MosModel
    from mos.trainer.checkpoint import save_checkpoint

    torch.manual_seed(1234)
    model = MosModel(ModelConfig(targets=list(targets), text_encoder=text_encoder, **SMALL, **model))
    with torch.no_grad():  # non-trivial normalisation statistics, as a trained model has
        model.frontend.feat_mean.uniform_(-8.0, -2.0)
        model.frontend.feat_std.uniform_(1.0, 3.0)
    checkpoint = root / name / "checkpoints" / "best.pt"
    extra = {"data": "synthetic", "validation_metrics": {}, "epoch": 0, "train_config": {}}
    save_checkpoint(checkpoint, model, extra)
    out = root / name / "bundle"
    # random weights and no data to judge int8 on: --force writes it (these bundles test the runtime)
    export_bundle(checkpoint, out, opset=17, quantize=quantize, verify=False, force=True)
    return ExportedBundle(out, checkpoint, [t.name for t in targets], text_encoder != "none")


# Each test module that imports a fixture gets its own definition of it, so "session" scope alone
# would export once per module: this cache makes it once per test session.
_EXPORTED: dict[str, ExportedBundle] = {}


@pytest.fixture(scope="session")
def text_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_text_encoder: Path) -> ExportedBundle:
    """Audio+text bundle with targets overall and textual (1-5), as MusicEval; its captions go
    through the tiny text encoder (conftest.tiny_text_encoder, a BERT as MiniLM is: the same
    tokenizer.json + text.onnx path at a fraction of the size). The real MiniLM export is
    conftest.minilm_bundle."""
    from fixtures_encoders import TEXT_HIDDEN

    from mos.model import TargetSpec

    if "text" not in _EXPORTED:
        root = tmp_path_factory.mktemp("rt-bundles")
        targets = [TargetSpec("overall", 1.0, 5.0, 3.0, 1.0), TargetSpec("textual", 1.0, 5.0, 3.2, 0.8)]
        _EXPORTED["text"] = _export(root, "text", targets, str(tiny_text_encoder), None, text_dim=TEXT_HIDDEN)
    return _EXPORTED["text"]


@pytest.fixture(scope="session")
def spread_bundle(tmp_path_factory: pytest.TempPathFactory) -> ExportedBundle:
    """Audio-only distribution bundle (12 bins) with one target `score` (0-10): audio.onnx also
    outputs `score_std`, the listener spread."""
    from mos.model import TargetSpec

    if "spread" not in _EXPORTED:
        root = tmp_path_factory.mktemp("rt-bundles-spread")
        _EXPORTED["spread"] = _export(root, "spread", [TargetSpec("score", 0.0, 10.0, 5.0, 2.0)], "none", None,
                                      distribution_bins=12)
    return _EXPORTED["spread"]


@pytest.fixture(scope="session")
def audio_bundle(tmp_path_factory: pytest.TempPathFactory) -> ExportedBundle:
    """Audio-only bundle with one target `score` (0-10), as XACLE, with an int8 variant."""
    from mos.model import TargetSpec

    if "audio" not in _EXPORTED:
        root = tmp_path_factory.mktemp("rt-bundles-audio")
        _EXPORTED["audio"] = _export(root, "audio", [TargetSpec("score", 0.0, 10.0, 5.0, 2.0)], "none", "int8")
    return _EXPORTED["audio"]


def caption_for(i: int, words: int = 12) -> str:
    rng = np.random.default_rng(1000 + i)
    return " ".join(rng.choice(WORDS, words))


def clip(seconds: float, rate: int = 16000, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Noise plus a tone, [frames] or [frames, channels] float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    base = 0.3 * np.sin(2 * np.pi * (220 + 40 * (seed % 7)) * t) + 0.05 * rng.standard_normal(n)
    if channels == 1:
        return base.astype(np.float32)
    cols = [base * (0.5 + 0.5 * c / channels) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000, seed: int = 0, channels: int = 1,
              subtype: str | None = None, fmt: str | None = None) -> Path:
    """Write a test clip; the default subtype is soundfile's for the extension (PCM_16, VORBIS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, clip(seconds, rate, seed, channels), rate, subtype=subtype, format=fmt)
    return path


def write_captions(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("wav_file_name", "text")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def make_folder(root: Path, n: int, seconds: float = 1.0) -> tuple[Path, Path]:
    """`n` wav files `clip_000.wav`... of varied lengths and a captions CSV for them."""
    folder = root / "wav"
    rows = []
    for i in range(n):
        name = f"clip_{i:03d}.wav"
        write_wav(folder / name, seconds * (0.5 + (i % 5) / 4), seed=i)
        rows.append((name, caption_for(i)))
    return folder, write_captions(root / "captions.csv", rows)


def read_csv_dicts(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def make_mean_bundle(root: Path, gain: float, low: float = 0.0, high: float = 10.0,
                     window_seconds: float = 1.0, target: str = "score") -> Path:
    """An audio-only bundle whose hand-built ONNX graph scores a clip `gain` x its mean sample,
    unclamped (as contract 1 says the exported graph does): window scores are plain to predict."""
    import onnx
    from onnx import TensorProto, helper

    from mos.bundle import write_bundle_meta

    root.mkdir(parents=True, exist_ok=True)
    nodes = [
        helper.make_node("ReduceSum", ["waveform", "axes"], ["total"], keepdims=0),
        helper.make_node("Cast", ["lengths"], ["length"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["total", "length"], ["mean"]),
        helper.make_node("Mul", ["mean", "gain"], [target]),
    ]
    graph = helper.make_graph(
        nodes, "mean_score",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info(target, TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1]), helper.make_tensor("gain", TensorProto.FLOAT, [], [gain])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, root / "audio.onnx")
    write_bundle_meta(root, {
        "sample_rate": 16000, "window_seconds": window_seconds, "text": None,
        "targets": [{"name": target, "low": low, "high": high}],
        "audio": {"model": "audio.onnx", "outputs": [target]}, "files": {"audio.onnx": ""},
    })
    return root
