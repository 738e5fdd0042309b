"""Encoder stacks (`--audio-encoder A+B`): resolving and one-line refusals, the stack's embedding
as the concatenation of its members' pooled embeddings, each member's feature cache shared with
the member used alone, and train -> export -> torch-free `mos score` equal to PyTorch."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from mos.cli import app  # noqa: E402
from mos.data.manifest import Item  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.model.encoders import build_audio_encoder, resolve_audio_encoder  # noqa: E402
from mos.model.masking import masked_mean  # noqa: E402

from fixtures_encoders import HIDDEN, count_encoded_windows, save_tiny  # noqa: E402

RATE = 16000
HAS_DISTILLMOS = importlib.util.find_spec("distillmos") is not None
needs_distillmos = pytest.mark.skipif(not HAS_DISTILLMOS, reason="distillmos is not installed "
                                      "(pip install --no-deps distillmos==0.9.1)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stack-encoders")
    return {"w2v": save_tiny(root / "w2v", "wav2vec2", "layer"), "hubert": save_tiny(root / "hubert", "hubert", "layer")}


def tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_resolve_a_stack(tiny: dict[str, Path]) -> None:
    spec = f"{tiny['w2v']}+{tiny['hubert']}"
    info = resolve_audio_encoder(spec)
    members = [resolve_audio_encoder(str(tiny[k])) for k in ("w2v", "hubert")]
    assert (info.kind, info.sample_rate, info.out_dim, info.window_seconds) == ("stack", RATE, 2 * HIDDEN, None)
    assert info.code_version == "+".join(m.code_version for m in members)
    assert info.padding_invariant


@pytest.mark.parametrize("spec, message", [
    ("{w2v}+{w2v}", "names an encoder twice"),
    ("{w2v}+", "a stack joins two or more encoders"),
    ("conv+{w2v}", "'conv' trains from scratch"),
])
def test_bad_stacks_are_one_line_errors(tiny: dict[str, Path], spec: str, message: str) -> None:
    with pytest.raises(MosError, match=message) as err:
        resolve_audio_encoder(spec.format(**tiny))
    assert "\n" not in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("aisfx") is None or not HAS_DISTILLMOS,
                    reason="aisfx and distillmos are not both installed")
def test_mixed_rates_are_refused_naming_the_rates() -> None:
    with pytest.raises(MosError) as err:
        resolve_audio_encoder("aisfx+distillmos")
    text = str(err.value)
    assert "\n" not in text and "aisfx 44100 Hz" in text and "distillmos 16000 Hz" in text


@pytest.mark.parametrize("option", [["--head", "fusion"], ["--finetune-audio"]])
def test_fusion_head_and_finetuning_are_refused_in_one_line(tiny: dict[str, Path], tmp_path: Path,
                                                            option: list[str]) -> None:
    from fixtures_train import TABLE_COLUMNS, make_table

    table = make_table(tmp_path / "data", n_signals=2)
    result = CliRunner().invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--runs-dir", str(tmp_path / "runs"),
                                      "--text-encoder", "none", "--audio-encoder", f"{tiny['w2v']}+{tiny['hubert']}",
                                      *option])
    assert result.exit_code != 0
    error = [line for line in result.output.splitlines() if option[0] in line]
    assert len(error) == 1 and "stack of encoders" in error[0], result.output
    assert "Traceback" not in result.output


def test_the_stack_embedding_is_the_members_pooled_embeddings(tiny: dict[str, Path]) -> None:
    """Each member's frames averaged over its valid frames (the pooled head's masked mean), in
    order, concatenated; with learned layer weightings that are not the initial equal ones."""
    stack = build_audio_encoder(f"{tiny['w2v']}+{tiny['hubert']}").eval()
    alone = [build_audio_encoder(str(tiny[k])).eval() for k in ("w2v", "hubert")]
    gen = torch.Generator().manual_seed(0)
    for member, single in zip(stack.members, alone):
        weights = torch.randn(member.mixer.weights.shape, generator=gen)
        member.mixer.weights.data.copy_(weights)
        single.mixer.weights.data.copy_(weights)
    a, b = tone(0.9, 1), tone(0.5, 2)
    wave = torch.zeros(2, len(a))
    wave[0], wave[1, : len(b)] = torch.from_numpy(a), torch.from_numpy(b)
    lengths = torch.tensor([len(a), len(b)])
    with torch.no_grad():
        frames, frame_lengths = stack(wave, lengths)
        expected = torch.cat([masked_mean(*single(wave, lengths)) for single in alone], dim=1)
    assert frames.shape == (2, 1, 2 * HIDDEN) and frame_lengths.tolist() == [1, 1]
    torch.testing.assert_close(frames[:, 0], expected, atol=1e-5, rtol=1e-4)


def test_checkpoints_hold_the_layer_weightings_not_the_frozen_members(tiny: dict[str, Path]) -> None:
    """A stack model's checkpoint keeps each member's learned layer weighting and leaves out the
    members' pretrained weights (loaded again from their sources, pinned by sha256); a model
    loaded from it scores as the one saved. A fusion head is refused in one line."""
    from mos.model import ModelConfig, MosModel, TargetSpec
    from mos.model.encoders import configure

    spec = f"{tiny['w2v']}+{tiny['hubert']}"
    cfg = ModelConfig(window_seconds=2.0, head="pooled", text_encoder="none",
                      targets=[TargetSpec("score", 1.0, 5.0, 3.0, 1.0)])
    configure(cfg, spec, resolve_audio_encoder(spec))
    torch.manual_seed(0)
    model = MosModel(cfg).eval()
    assert cfg.audio_dim == 2 * HIDDEN
    with torch.no_grad():
        model.audio_encoder.members[1].mixer.weights.copy_(torch.tensor([1.0, 0.0, -1.0]))
    state = model.checkpoint_state()
    assert {"audio_encoder.members.0.mixer.weights", "audio_encoder.members.1.mixer.weights"} <= set(state)
    assert not any(".backbone." in k for k in state)
    x = torch.from_numpy(tone(0.7, 3)).unsqueeze(0)
    lengths = torch.tensor([x.shape[1]])
    again = MosModel(cfg).eval()
    again.load_checkpoint_state(state)
    with torch.no_grad():
        assert torch.allclose(again.scores(x, lengths), model.scores(x, lengths), atol=1e-6)
    cfg.head = "fusion"
    with pytest.raises(MosError, match="--head fusion attends over frames") as err:
        MosModel(cfg)
    assert "\n" not in str(err.value)


@needs_distillmos
def test_a_members_cache_is_shared_with_the_stack(tiny: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The wav2vec2 features cached by a run of wav2vec2 alone are read again by the stack (the
    encoder is not run on them); Distill-MOS's, made by the stack, by Distill-MOS alone; the
    stack's cached embedding is what its `features` gives in the graph."""
    import soundfile as sf

    from mos.model.encoders.distillmos import DistillMosAudioEncoder
    from mos.model.encoders.ssl import SslAudioEncoder
    from mos.trainer.feature_cache import FeatureCache, make_feature_cache

    items = []
    for k, seconds in enumerate((1.0, 0.6, 1.4)):
        path = tmp_path / f"clip{k}.wav"
        sf.write(path, tone(seconds, k), RATE)
        items.append(Item(id=f"c{k}", path=path, targets={"mos": 3.0}))
    ssl_runs = count_encoded_windows(monkeypatch, SslAudioEncoder)
    dm_runs = count_encoded_windows(monkeypatch, DistillMosAudioEncoder)
    root, window, device = tmp_path / "cache", 122880, torch.device("cpu")
    w2v = build_audio_encoder(str(tiny["w2v"]))
    FeatureCache(root, w2v, window, device).prepare(items)
    assert sum(ssl_runs) == 3 and not dm_runs
    stack = build_audio_encoder(f"{tiny['w2v']}+distillmos").eval()
    ssl_runs.clear()  # building the stack probes each member once
    dm_runs.clear()
    cache = make_feature_cache(root, stack, window, device)
    lines: list[str] = []
    cache.prepare(items, lines.append)
    assert not ssl_runs and sum(dm_runs) == 3, lines
    assert any("all 3 clip(s) from the cache" in line for line in lines), lines
    dm_runs.clear()
    FeatureCache(root, build_audio_encoder("distillmos"), window, device).prepare(items)
    assert not dm_runs
    with torch.no_grad():
        for it in items:
            from mos.audio import read_audio

            x = torch.from_numpy(read_audio(it.path, RATE)).unsqueeze(0)
            feats, _ = stack.features(x, torch.tensor([x.shape[1]]))
            np.testing.assert_allclose(cache.clips[it.path].windows[0], feats[0].numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@needs_distillmos
@pytest.mark.parametrize("head", ["pooled", "svr"])
def test_train_export_score_torch_free_matches_pytorch(tiny: dict[str, Path], tmp_path: Path, head: str) -> None:
    """A pooled (or fitted SVR) head on wav2vec2 + Distill-MOS: `mos train` caches each member under its own key,
    `mos export` puts both encoders into one audio.onnx, and `mos score` (ONNX Runtime) gives
    each clip PyTorch's score."""
    from fixtures_train import TABLE_COLUMNS, make_table

    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    table = make_table(tmp_path / "data", n_signals=3, seconds=1.2)
    runner = CliRunner()
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "st", "--epochs", "2", "--batch-size", "4",
                                 "--text-encoder", "none", "--audio-encoder", f"{tiny['w2v']}+distillmos",
                                 "--head", head, "--feature-cache", str(cache)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 2 and names[0].startswith("distillmos-") and names[1].startswith("wav2vec2-"), names
    result = runner.invoke(app, ["export", str(runs / "st")])
    assert result.exit_code == 0, result.output
    bundle = runs / "st" / "bundle"
    meta = json.loads((bundle / "mos.json").read_text())
    encoder = meta["audio"]["encoder"]
    assert encoder["kind"] == "stack" and [m["kind"] for m in encoder["members"]] == ["wav2vec2", "distillmos"]
    assert encoder["sample_rate"] == RATE and meta["window_seconds"] == pytest.approx(7.68)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(tmp_path / "data" / "audio"), "--bundle", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}
    model, _ = load_model(runs / "st")
    wavs = sorted((tmp_path / "data" / "audio").glob("*/*.wav"))
    assert len(wavs) == len(rows) == 12
    for wav in wavs:
        x = torch.from_numpy(read_audio(str(wav), RATE)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(x, torch.tensor([x.shape[1]]))[0, 0])
        assert rows[wav.resolve()] == pytest.approx(expected, abs=1e-3)
