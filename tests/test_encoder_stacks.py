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


HAS_AISFX = importlib.util.find_spec("aisfx") is not None
needs_both = pytest.mark.skipif(not (HAS_AISFX and HAS_DISTILLMOS), reason="aisfx and distillmos are not both installed")
HIGH = 44100


def tone_at(rate: int, seconds: float, seed: int) -> np.ndarray:
    """A tone with a little noise, band-limited well below 8 kHz (so any good resampler keeps it)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (x + 0.02 * np.sin(2 * np.pi * 1900 * t + seed) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("source, target", [(44100, 16000), (48000, 16000), (16000, 44100)])
def test_the_graph_resampler_gives_mos_audios_samples(source: int, target: int) -> None:
    """The in-graph resampler (a strided Conv1d) gives resample_poly's samples, the valid lengths
    ceil(n * target / source), and zeros past them, for a clip alone and zero-padded in a batch."""
    from mos.audio import resample_poly
    from mos.model.encoders.stack import GraphResampler

    resampler = GraphResampler(source, target)
    clips = [np.random.default_rng(n).standard_normal(n).astype(np.float32) for n in (1, 441, 5003)]
    wave = torch.zeros(len(clips), 5003)
    for row, clip in enumerate(clips):
        wave[row, : len(clip)] = torch.from_numpy(clip)
    lengths = torch.tensor([len(c) for c in clips])
    with torch.no_grad():
        out, out_lengths = resampler(wave, lengths)
    for row, clip in enumerate(clips):
        want = resample_poly(clip, resampler.up, resampler.down)
        assert int(out_lengths[row]) == len(want) == -(-len(clip) * target // source)
        np.testing.assert_allclose(out[row, : len(want)].numpy(), want, atol=2e-6)
        assert not out[row, len(want):].any()


@needs_both
def test_a_mixed_stack_resolves_at_the_highest_rate() -> None:
    """aisfx (44.1 kHz) + distillmos (16 kHz): the stack runs at 44.1 kHz, keeps Distill-MOS's
    7.68 s window, and the resampled member's code version says it is fed 44.1 kHz audio."""
    from mos.model.encoders.stack import ResampledEncoder

    info = resolve_audio_encoder("aisfx+distillmos")
    alone = [resolve_audio_encoder(k) for k in ("aisfx", "distillmos")]
    assert (info.sample_rate, info.window_seconds) == (HIGH, pytest.approx(7.68))
    assert info.out_dim == sum(a.out_dim for a in alone)
    assert info.code_version == f"{alone[0].code_version}+{alone[1].code_version}+from{HIGH}"
    stack = build_audio_encoder("aisfx+distillmos")
    assert not isinstance(stack.members[0], ResampledEncoder) and isinstance(stack.members[1], ResampledEncoder)
    assert [m.info.sample_rate for m in stack.members] == [HIGH, HIGH]
    assert stack.members[1].encoder.info.sample_rate == RATE


@pytest.fixture(scope="module")
def mixed_stack():
    if not (HAS_AISFX and HAS_DISTILLMOS):
        pytest.skip("aisfx and distillmos are not both installed")
    return build_audio_encoder("aisfx+distillmos").eval()


def test_the_resampled_member_is_close_to_the_member_at_its_own_rate(mixed_stack, tmp_path: Path) -> None:
    """Distill-MOS in a 44.1 kHz stack (fed 44.1 kHz audio resampled in the graph) vs Distill-MOS alone
    on the file read at 16 kHz (mos.audio's resampler, which the graph's equals): its embeddings
    agree to 1e-4 relative (measured: about 1e-6)."""
    import soundfile as sf

    from mos.audio import read_audio

    stack = mixed_stack
    alone = build_audio_encoder("distillmos").eval()
    worst = 0.0
    for seed, seconds in ((1, 1.3), (2, 3.0)):
        path = tmp_path / f"clip{seed}.wav"
        sf.write(path, tone_at(HIGH, seconds, seed), HIGH)
        high, low = read_audio(path, stack.info.sample_rate), read_audio(path, RATE)
        with torch.no_grad():
            got, _ = stack.members[1].features(torch.from_numpy(high)[None], torch.tensor([len(high)]))
            want, _ = alone.features(torch.from_numpy(low)[None], torch.tensor([len(low)]))
        worst = max(worst, float((got - want).abs().max() / want.abs().max()))
    print(f"distillmos in a 44.1 kHz stack vs alone at 16 kHz: max |diff| / max |features| = {worst:.2e}")
    assert worst < 1e-4


def test_a_mixed_stack_is_padding_invariant(mixed_stack) -> None:
    """A clip alone and zero-padded in a batch beside a longer one: the same stack features (each
    member's), so the trainer may batch clips of different lengths."""
    stack = mixed_stack
    rate = stack.info.sample_rate
    assert stack.info.padding_invariant and rate == HIGH
    a, b = tone_at(rate, 0.7, 3), tone_at(rate, 1.6, 4)
    wave = torch.zeros(2, len(b))
    wave[0, : len(a)], wave[1] = torch.from_numpy(a), torch.from_numpy(b)
    with torch.no_grad():
        alone, _ = stack.features(torch.from_numpy(a)[None], torch.tensor([len(a)]))
        batched, _ = stack.features(wave, torch.tensor([len(a), len(b)]))
    torch.testing.assert_close(batched[:1], alone, atol=1e-4, rtol=1e-4)


def test_a_resampled_members_cache_is_not_the_members_own(mixed_stack, tmp_path: Path) -> None:
    """Distill-MOS fed resampled audio in the stack caches under its own key ("+from44100"), apart
    from Distill-MOS alone; aisfx at the stack's rate keeps its key."""
    from mos.trainer.feature_cache import FeatureCache, make_feature_cache

    stack = mixed_stack
    window, device = round(7.68 * HIGH), torch.device("cpu")
    cache = make_feature_cache(tmp_path, stack, window, device)
    alone = [FeatureCache(tmp_path, build_audio_encoder(s), window, device) for s in ("aisfx", "distillmos")]
    assert cache.members[0].dir == alone[0].dir
    assert cache.members[1].dir != alone[1].dir and cache.members[1].dir.name.endswith(f"+from{HIGH}")


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


def train_export_score(tmp_path: Path, spec: str, head: str, n_signals: int, rate: int) -> tuple[list[str], dict, float]:
    """`mos train` (2 epochs, a feature cache) on a tiny table of `rate` Hz clips -> `mos export`
    -> torch-free `mos score`: the cache's folder names, mos.json, and the largest difference
    between a clip's ONNX Runtime score and its PyTorch score (every clip scored)."""
    from fixtures_train import TABLE_COLUMNS, make_table

    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    table = make_table(tmp_path / "data", n_signals=n_signals, seconds=1.2, rate=rate)
    runner = CliRunner()
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "st", "--epochs", "2", "--batch-size", "4",
                                 "--text-encoder", "none", "--audio-encoder", spec,
                                 "--head", head, "--feature-cache", str(cache)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(runs / "st")])
    assert result.exit_code == 0, result.output
    bundle = runs / "st" / "bundle"
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(tmp_path / "data" / "audio"), "--bundle", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}
    model, _ = load_model(runs / "st")
    wavs = sorted((tmp_path / "data" / "audio").glob("*/*.wav"))
    assert len(wavs) == len(rows) == 4 * n_signals
    worst = 0.0
    for wav in wavs:
        x = torch.from_numpy(read_audio(str(wav), rate)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(x, torch.tensor([x.shape[1]]))[0, 0])
        worst = max(worst, abs(rows[wav.resolve()] - expected))
    return sorted(p.name for p in cache.iterdir()), json.loads((bundle / "mos.json").read_text()), worst


@pytest.mark.slow
@needs_distillmos
@pytest.mark.parametrize("head", ["pooled", "svr"])
def test_train_export_score_torch_free_matches_pytorch(tiny: dict[str, Path], tmp_path: Path, head: str) -> None:
    """A pooled (or fitted SVR) head on wav2vec2 + Distill-MOS: `mos train` caches each member under its own key,
    `mos export` puts both encoders into one audio.onnx, and `mos score` (ONNX Runtime) gives
    each clip PyTorch's score."""
    names, meta, worst = train_export_score(tmp_path, f"{tiny['w2v']}+distillmos", head, 3, RATE)
    assert len(names) == 2 and names[0].startswith("distillmos-") and names[1].startswith("wav2vec2-"), names
    encoder = meta["audio"]["encoder"]
    assert encoder["kind"] == "stack" and [m["kind"] for m in encoder["members"]] == ["wav2vec2", "distillmos"]
    assert encoder["sample_rate"] == RATE and meta["window_seconds"] == pytest.approx(7.68)
    assert worst < 1e-3


@pytest.mark.slow
@needs_both
def test_a_mixed_stack_trains_exports_and_scores_torch_free(tmp_path: Path) -> None:
    """aisfx (44.1 kHz) + Distill-MOS (16 kHz, resampled in the graph), pooled head: `mos train`
    caches Distill-MOS under its "+from44100" key, `mos export` puts the resampler and both
    encoders into one 44.1 kHz audio.onnx, and `mos score` (ONNX Runtime) gives PyTorch's scores."""
    names, meta, worst = train_export_score(tmp_path, "aisfx+distillmos", "pooled", 2, HIGH)
    assert len(names) == 2 and names[0].startswith("aisfx-") and names[1].startswith("distillmos-"), names
    assert f"-{HIGH}hz-" in names[1] and names[1].endswith(f"+from{HIGH}"), names
    encoder = meta["audio"]["encoder"]
    assert encoder["kind"] == "stack" and [m["kind"] for m in encoder["members"]] == ["aisfx", "distillmos"]
    assert encoder["sample_rate"] == HIGH and meta["window_seconds"] == pytest.approx(7.68)
    print(f"aisfx+distillmos: max |ONNX Runtime - PyTorch| = {worst:.2e}")
    assert worst < 1e-3
