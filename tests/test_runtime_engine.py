"""Runtime engine: ONNX Runtime scores equal PyTorch's, alone and in any batch; windows; sessions."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures_runtime import audio_bundle, caption_for, clip, make_mean_bundle, text_bundle, write_wav  # noqa: F401
from mos.audio import iter_audio_windows
from mos.errors import BundleError, MosError
from mos.runtime import EngineOptions, ScoreEngine, SessionConfig, open_session
from mos.runtime.batching import pad_waveforms, plan_batches
from mos.runtime.reader import BackgroundIterator, prefetch_ordered
from mos.runtime.session import SessionRunner
from mos.windows import split_windows, window_mean

LENGTHS_S = [0.3, 1.0, 2.5, 0.05, 4.0, 7.3, 10.0, 1.7]


@pytest.fixture(scope="module")
def engine(text_bundle) -> ScoreEngine:  # noqa: F811
    return ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=2, batch_size=4))


@pytest.fixture(scope="module")
def clips() -> tuple[list[np.ndarray], list[str]]:
    waves = [clip(s, seed=i) for i, s in enumerate(LENGTHS_S)]
    captions = [caption_for(i, words=3 + 3 * (i % 4)) for i in range(len(waves))]
    return waves, captions


@pytest.fixture(scope="module")
def torch_scores(text_bundle, clips) -> np.ndarray:  # noqa: F811
    """PyTorch model.scores for each clip alone (batch 1, no padding)."""
    import torch

    from mos.model.text_encoder import FrozenTextEncoder
    from mos.trainer.checkpoint import load_model

    model, _ = load_model(text_bundle.checkpoint)
    encoder = FrozenTextEncoder(model.cfg.text_encoder, max_tokens=model.cfg.max_text_tokens)
    waves, captions = clips
    out = []
    with torch.no_grad():
        for wave, caption in zip(waves, captions):
            (feats,) = encoder.encode([caption])
            text, text_lengths = feats[None], torch.tensor([feats.shape[0]])
            w = torch.from_numpy(wave)[None]
            out.append(model.scores(w, torch.tensor([w.shape[1]]), text, text_lengths)[0].numpy())
    return np.stack(out)


def test_engine_matches_torch_alone_and_in_any_batch(engine, clips, torch_scores) -> None:
    waves, captions = clips
    assert engine.targets == ["overall", "textual"]
    assert engine.provider == "CPUExecutionProvider"
    alone = np.stack([engine.score_arrays([w], [c])[0] for w, c in zip(waves, captions)])
    np.testing.assert_allclose(alone, torch_scores, atol=1e-4)
    rng = np.random.default_rng(0)
    for batch_size in (1, 2, 3, 8):
        order = rng.permutation(len(waves))
        got = engine.score_segments([waves[i] for i in order], [captions[i] for i in order], batch_size)
        np.testing.assert_allclose(got, torch_scores[order], atol=1e-4)
    # the whole set in one padded batch, in reverse order
    got = engine.score_segments(waves[::-1], captions[::-1], 64)
    np.testing.assert_allclose(got, torch_scores[::-1], atol=1e-4)
    # padded to whole seconds, as on CUDA
    engine.pad_multiple = 16000
    try:
        np.testing.assert_allclose(engine.score_segments(waves, captions, 3), torch_scores, atol=1e-4)
    finally:
        engine.pad_multiple = 1


def test_each_distinct_caption_is_encoded_once(text_bundle) -> None:  # noqa: F811
    eng = ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=1))
    assert eng.text is not None
    waves = [clip(0.5, seed=i) for i in range(12)]
    captions = [caption_for(i % 3) for i in range(12)]
    first = eng.score_arrays(waves, captions)
    assert eng.text.encoded == 3
    again = eng.score_arrays(waves, captions)
    assert eng.text.encoded == 3
    np.testing.assert_array_equal(first, again)


def test_long_array_is_the_length_weighted_mean_of_its_windows(engine) -> None:
    wave = clip(25.0, seed=7)
    caption = caption_for(5)
    got = engine.score_arrays([wave], [caption])[0]
    pieces = [wave[:160000], wave[160000:320000], wave[320000:]]
    per_window = np.stack([engine.score_segments([p], [caption], 1)[0] for p in pieces]).astype(np.float64)
    expected = (per_window * np.array([160000, 160000, 80000])[:, None]).sum(0) / 400000
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(per_window[0], per_window[2], atol=1e-6)  # windows really differ


def test_long_file_windows_follow_mos_audio(engine, tmp_path: Path) -> None:
    """The windows the runtime scores for a file are mos.audio.iter_audio_windows' windows."""
    from mos.runtime.pipeline import PipelineOptions, score_jobs
    from mos.runtime.inputs import Job

    path = write_wav(tmp_path / "long.wav", 25.0, rate=22050, seed=3)
    caption = caption_for(9)
    windows = list(iter_audio_windows(path, 16000, 10.0))
    assert len(windows) == 3
    per_window = engine.score_segments(windows, [caption] * 3, 1).astype(np.float64)
    expected = window_mean(per_window, np.array([len(w) for w in windows]))
    [result] = list(score_jobs(engine, [Job("long.wav", path, caption)], PipelineOptions(batch_size=2)))
    assert result.error is None
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)
    assert result.duration == pytest.approx(25.0, abs=1e-3)


def test_a_file_scores_exactly_as_its_samples_do(tmp_path: Path) -> None:
    """`mos score`'s pipeline and ScoreEngine.score_arrays average a long clip's windows with the
    same code (mos.windows.window_mean), in the same order: the same scores to the last bit."""
    from mos.runtime.inputs import Job
    from mos.runtime.pipeline import PipelineOptions, score_jobs

    bundle = make_mean_bundle(tmp_path / "bundle", gain=20.0, low=-10.0, high=10.0, window_seconds=0.1)
    eng = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1))
    path = write_wav(tmp_path / "long.wav", 1.25, seed=11)  # 13 windows of 0.1 s (the last 0.05 s)
    wave = iter_audio_windows(path, 16000, 1000.0).__next__()
    assert len(split_windows(wave, eng.window_samples)) == 13
    [result] = list(score_jobs(eng, [Job("long.wav", path, None)], PipelineOptions(batch_size=4)))
    assert result.error is None
    np.testing.assert_array_equal(result.scores, eng.score_arrays([wave], [None])[0])


def test_audio_only_bundle_and_int8_variant(audio_bundle) -> None:  # noqa: F811
    fp32 = ScoreEngine.load(audio_bundle.path, EngineOptions(device="cpu", threads=1))
    int8 = ScoreEngine.load(audio_bundle.path, EngineOptions(device="cpu", threads=1, int8=True))
    assert fp32.text is None and fp32.targets == ["score"]
    waves = [clip(s, seed=i) for i, s in enumerate((0.5, 2.0, 3.0))]
    a = fp32.score_arrays(waves, [None] * 3)
    b = int8.score_arrays(waves, [None] * 3)
    assert a.shape == (3, 1) and np.all((a >= 0) & (a <= 10))
    np.testing.assert_allclose(a, b, atol=0.25)


def test_text_model_needs_captions(engine) -> None:
    with pytest.raises(MosError, match="caption"):
        engine.score_arrays([clip(0.5)], [None])


def test_io_binding_path_gives_the_same_scores(engine, clips) -> None:
    """The CUDA code path (io_binding) exercised on CPU gives identical outputs."""
    waves, captions = clips
    plain = engine.score_segments(waves, captions, 4)
    bound = SessionRunner(engine.audio.session, use_binding=True)
    saved = engine.audio
    try:
        engine.audio = bound
        np.testing.assert_allclose(engine.score_segments(waves, captions, 4), plain, atol=1e-6)
    finally:
        engine.audio = saved


def test_cuda_without_cuda_is_a_clear_error(text_bundle) -> None:  # noqa: F811
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(MosError, match="--device cuda"):
        open_session(text_bundle.path / "audio.onnx", SessionConfig(device="cuda"))


def test_auto_reports_the_provider_that_ran(monkeypatch, audio_bundle, tmp_path: Path) -> None:  # noqa: F811
    """The provider the engine reports (and `mos score` prints) is the one onnxruntime's own
    sessions say they run, also when onnxruntime-gpu offers CUDA but no GPU starts; and
    `mos score --device cuda` without CUDA fails instead of running on the CPU."""
    import onnxruntime as ort
    from typer.testing import CliRunner

    import mos.runtime.session as session_mod
    from mos.cli import app

    cuda_here = "CUDAExecutionProvider" in ort.get_available_providers()
    engine = ScoreEngine.load(audio_bundle.path, EngineOptions(device="auto", threads=1))
    ran = engine.audio.session.get_providers()
    assert engine.provider == ran[0] == ("CUDAExecutionProvider" if cuda_here else "CPUExecutionProvider")

    wav = write_wav(tmp_path / "a.wav", 1.0, seed=2)
    result = CliRunner().invoke(app, ["score", str(wav), "--bundle", str(audio_bundle.path), "--out",
                                      str(tmp_path / "s.csv"), "--device", "auto", "-q"])
    assert result.exit_code == 0, result.output
    assert f"provider {ran[0]}" in result.output

    cuda = CliRunner().invoke(app, ["score", str(wav), "--bundle", str(audio_bundle.path), "--out",
                                    str(tmp_path / "c.csv"), "--device", "cuda", "-q"])
    if cuda_here:
        assert cuda.exit_code == 0 and "provider CUDAExecutionProvider" in cuda.output
        return
    assert cuda.exit_code != 0 and "--device cuda" in cuda.output and not (tmp_path / "c.csv").exists()

    # onnxruntime-gpu installed, but CUDA does not start: auto runs on the CPU and says so
    monkeypatch.setattr(session_mod, "_cuda_available", lambda ort: True)
    fallback = ScoreEngine.load(audio_bundle.path, EngineOptions(device="auto", threads=1))
    assert fallback.audio.session.get_providers() == ["CPUExecutionProvider"]
    assert fallback.provider == "CPUExecutionProvider"
    result = CliRunner().invoke(app, ["score", str(wav), "--bundle", str(audio_bundle.path), "--out",
                                      str(tmp_path / "f.csv"), "--device", "auto", "-q"])
    assert result.exit_code == 0 and "provider CPUExecutionProvider" in result.output


def test_missing_onnxruntime_names_the_install(monkeypatch, text_bundle) -> None:  # noqa: F811
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MosError, match=r"onnxruntime is not installed: pip install onnxruntime "):
        open_session(text_bundle.path / "audio.onnx", SessionConfig(device="cpu"))


def test_unloadable_model_is_a_bundle_error(tmp_path: Path) -> None:
    bad = tmp_path / "audio.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(BundleError, match="audio.onnx"):
        open_session(bad, SessionConfig(device="cpu"))


# --- the small pieces ------------------------------------------------------------------------


def test_plan_batches_covers_every_index_once_and_groups_lengths() -> None:
    lengths = [5, 1, 9, 3, 3, 8, 2, 7, 6]
    batches = plan_batches(lengths, 4)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 4 for b in batches)
    spans = [max(lengths[i] for i in b) for b in batches]
    assert spans == sorted(spans)


def test_plan_batches_with_equal_lengths_never_pads() -> None:
    """For encoders that zero padding changes (bundle padding_invariant false)."""
    lengths = [5, 3, 5, 3, 5, 9, 5, 3]
    batches = plan_batches(lengths, 3, equal_lengths=True)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 3 for b in batches)
    assert sorted(len(b) for b in batches) == [1, 1, 3, 3]


def test_pad_and_split() -> None:
    waves = [np.ones(3, np.float32), np.ones(5, np.float32)]
    padded, lengths = pad_waveforms(waves)
    assert padded.shape == (2, 5) and padded[0, 3:].sum() == 0 and lengths.dtype == np.int64
    assert [len(p) for p in split_windows(np.zeros(25), 10)] == [10, 10, 5]
    assert [len(p) for p in split_windows(np.zeros(10), 10)] == [10]


def test_prefetch_keeps_order_and_bounds_the_work_ahead() -> None:
    import threading
    import time

    started: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.001 * (i % 3))
        return i * i

    seen = []
    for item, result in prefetch_ordered(range(50), work, workers=4, ahead=5):
        assert result == item * item
        with lock:
            assert len(started) <= item + 5 + 1
        seen.append(item)
    assert seen == list(range(50))


def test_background_iterator_passes_errors_and_stops() -> None:
    def gen():
        yield 1
        yield 2
        raise ValueError("boom")

    it = BackgroundIterator(gen(), maxsize=1)
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(ValueError, match="boom"):
        next(it)
    endless = BackgroundIterator(iter(range(10**9)), maxsize=2)
    assert next(endless) == 0
    endless.close()


def test_long_file_failing_midway_is_one_error_and_the_next_file_scores(engine, tmp_path: Path) -> None:
    import soundfile as sf

    from mos.runtime.inputs import Job
    from mos.runtime.pipeline import PipelineOptions, score_jobs

    x = clip(25.0, seed=11)
    x[16000 * 15] = np.nan  # in the second window
    sf.write(tmp_path / "bad_long.wav", x, 16000, subtype="FLOAT")
    good = write_wav(tmp_path / "after.wav", 12.0, seed=12)
    jobs = [Job("bad_long.wav", tmp_path / "bad_long.wav", "x"), Job("after.wav", good, "y"),
            Job("missing.wav", tmp_path / "missing.wav", "z")]
    results = list(score_jobs(engine, jobs, PipelineOptions(batch_size=1, chunk_batches=1)))
    assert [r.job.id for r in results] == ["bad_long.wav", "after.wav", "missing.wav"]
    assert results[0].error is not None and "NaN" in results[0].error and results[0].duration is None
    assert results[1].error is None and results[1].duration == pytest.approx(12.0)
    expected = engine.score_arrays([np.concatenate(list(iter_audio_windows(good, 16000, 10.0)))], ["y"])[0]
    np.testing.assert_allclose(results[1].scores, expected, atol=1e-5)
    assert "file not found" in (results[2].error or "")


def test_cuda_that_does_not_start_auto_falls_back_and_cuda_refuses(monkeypatch, text_bundle) -> None:  # noqa: F811
    """As where onnxruntime-gpu is installed but no GPU works: auto reports the CPU it ran on,
    --device cuda is an error rather than a silent fallback."""
    import mos.runtime.session as session_mod

    monkeypatch.setattr(session_mod, "_cuda_available", lambda ort: True)
    path = text_bundle.path / "audio.onnx"
    auto = open_session(path, SessionConfig(device="auto", threads=1))
    assert SessionRunner(auto).provider == "CPUExecutionProvider"
    with pytest.raises(MosError, match="--device cuda: the CUDA provider failed to start"):
        open_session(path, SessionConfig(device="cuda", threads=1))


def test_plan_streams_defaults_and_explicit_choices() -> None:
    from mos.runtime.engine import plan_streams

    assert plan_streams(0, 0, 2) == (2, 1)  # default: a single-threaded run per core
    assert plan_streams(0, 0, 1) == (1, 1)
    assert plan_streams(0, 2, 8) == (1, 2)  # --threads alone: one run of that many threads
    assert plan_streams(4, 0, 8) == (4, 2)  # --streams alone: the cores split among the runs
    assert plan_streams(3, 0, 2) == (3, 1)
    assert plan_streams(2, 3, 2) == (2, 3)  # both given: as asked


def test_concurrent_streams_give_the_rows_of_one_stream(text_bundle, tmp_path: Path) -> None:  # noqa: F811
    """Chunks scored on 3 threads at once (text of one overlapping audio of another) give every
    file the scores, order and errors that one stream gives; a broken file among them fails alone."""
    from mos.runtime.inputs import Job
    from mos.runtime.pipeline import PipelineOptions, score_jobs

    jobs = []
    for i in range(23):
        seconds = [0.4, 1.3, 2.2, 12.5, 0.9][i % 5]  # 12.5 s: two windows
        path = write_wav(tmp_path / f"c{i:02d}.wav", seconds, seed=100 + i)
        jobs.append(Job(f"c{i:02d}.wav", path, caption_for(i, words=3 + i % 7)))
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really")
    jobs.insert(9, Job("broken.wav", tmp_path / "broken.wav", "a broken file"))
    rows = {}
    for streams in (1, 3):
        engine = ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=1, streams=streams))
        assert engine.streams == streams and engine.threads == 1
        results = list(score_jobs(engine, jobs, PipelineOptions(batch_size=2, chunk_batches=1)))
        assert [r.job.id for r in results] == [j.id for j in jobs]
        rows[streams] = results
    for one, three in zip(rows[1], rows[3]):
        assert (one.error is None) == (three.error is None), one.job.id
        if one.error is None:
            np.testing.assert_allclose(three.scores, one.scores, atol=1e-6)
            assert three.duration == one.duration
    assert rows[3][9].error is not None and "broken.wav" in rows[3][9].error
    assert sum(r.error is None for r in rows[3]) == 23


def test_caption_encoder_is_safe_across_threads(text_bundle) -> None:  # noqa: F811
    """Four threads encoding overlapping caption lists get exactly what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    captions = [caption_for(i, words=2 + i % 9) for i in range(40)]
    alone = ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=1)).text.encode(captions)
    shared = ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=1)).text
    shared.batch_size = 4
    lists = [captions[k::3] + captions[: 10 + k] for k in range(8)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(shared.encode, lists))
    index = {c: i for i, c in enumerate(captions)}
    for lst, out in zip(lists, outs):
        for c, feats in zip(lst, out):
            np.testing.assert_allclose(feats, alone[index[c]], atol=1e-5)
    assert shared.encoded == len(set(captions))  # each distinct caption through text.onnx once


def test_engine_batches_run_on_its_streams_with_the_same_scores(engine, clips) -> None:
    two = ScoreEngine.load(engine.bundle.root, EngineOptions(device="cpu", threads=1, streams=2, batch_size=2))
    waves, captions = clips
    np.testing.assert_allclose(two.score_arrays(waves, captions), engine.score_arrays(waves, captions), atol=1e-5)


def test_pipeline_keeps_only_the_captions_still_needed(text_bundle, tmp_path: Path) -> None:  # noqa: F811
    """Each distinct caption is encoded once, even one repeated far apart in the run, and a
    caption's features are dropped after its last job: memory follows the look-ahead."""
    from mos.runtime.inputs import Job
    from mos.runtime.pipeline import PipelineOptions, _CaptionFeatures, score_jobs

    wav = write_wav(tmp_path / "a.wav", 0.5, seed=3)
    captions = [caption_for(i, words=4 + i % 5) for i in range(150)]
    captions[140] = captions[2]  # MusicEval-like: a prompt used again much later
    jobs = [Job(f"j{i}", wav, c) for i, c in enumerate(captions)]
    engine = ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=1, streams=2,
                                                             text_batch_size=16))
    results = list(score_jobs(engine, jobs, PipelineOptions(batch_size=4, chunk_batches=1)))
    assert all(r.ok for r in results)
    assert engine.text.encoded == len(set(captions)) == 149
    np.testing.assert_allclose(results[140].scores, results[2].scores, atol=1e-6)

    table = _CaptionFeatures(engine, jobs, span=16)
    peak = 0
    for i, job in enumerate(jobs):
        table.ensure(i)
        got = table.encode([job.caption])[0]
        np.testing.assert_allclose(got, engine.text.encode([job.caption])[0], atol=1e-5)
        table.release(job)
        peak = max(peak, len(table.features))
    assert peak <= 16 + 1  # one text batch ahead, plus the caption that comes back at job 140
    assert table.features == {} and not table.uses
