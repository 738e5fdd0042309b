"""The scoring loop: decoded files -> windows -> length-sorted batches -> per-file results in order.

Chunks of windows are scored by `engine.streams` threads at once (ONNX Runtime releases the GIL):
each runs its chunk's captions through the text model, then its batches through the audio model,
so one chunk's text overlaps another's audio, and decoding runs beside both in the reader pool."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from mos.runtime.engine import ScoreEngine
from mos.runtime.text import CaptionSource
from mos.runtime.inputs import Job
from mos.errors import one_line
from mos.runtime.reader import AudioSpec, BackgroundIterator, Decoded, decode_file, prefetch_ordered
from mos.windows import window_mean


@dataclass
class FileResult:
    """A finished file: scores [n_targets] (float64) and duration, or a one-line error."""

    job: Job
    scores: np.ndarray | None
    duration: float | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PipelineOptions:
    """Reader threads, batch size (windows per session run), and the look-ahead chunk (in batches)
    sorted by length before batching; memory holds about 2 * chunk_batches batches of windows."""

    workers: int = 2
    batch_size: int = 16
    chunk_batches: int = 2


@dataclass
class FileState:
    """A file being scored: its windows' score rows and lengths so far, and whether all are in."""

    job: Job
    index: int = 0  # position in the job list
    rows: list[np.ndarray] = field(default_factory=list)  # each scored window's raw row, as scored
    lengths: list[int] = field(default_factory=list)  # and its length in samples
    samples: int = 0
    outstanding: int = 0  # windows handed to a batch, not scored yet
    complete: bool = False  # every window has been handed out (or the file failed)
    error: str | None = None
    windows: int = 0

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.complete = True

    @property
    def finished(self) -> bool:
        return self.complete and (self.outstanding == 0 or self.error is not None)

    def add(self, scores: np.ndarray, length: int) -> None:
        self.outstanding -= 1
        if self.error is not None:
            return
        if not np.all(np.isfinite(scores)):
            self.fail(f"{self.job.path}: the model gave a non-finite score")
            return
        self.rows.append(np.array(scores, dtype=np.float64))
        self.lengths.append(int(length))

    def result(self, sample_rate: int, finish: Callable[[np.ndarray], np.ndarray]) -> FileResult:
        """The file's scores: its windows' length-weighted mean (mos.windows.window_mean), then
        `finish`ed (clamped to each target's range; spreads and quantiles for a distribution model:
        ScoreEngine.finish)."""
        if self.error is not None or not self.rows:
            return FileResult(self.job, None, None, self.error or f"{self.job.path}: no audio scored")
        mean = window_mean(np.stack(self.rows), np.array(self.lengths))
        return FileResult(self.job, finish(mean), self.samples / sample_rate, None)


@dataclass
class _Segment:
    state: FileState
    wave: np.ndarray
    caption: str | None = field(default=None)


def score_segments_safely(
    engine: ScoreEngine, waves: list[np.ndarray], captions: list[str | None], batch_size: int,
    text: CaptionSource | None = None,
) -> list[np.ndarray | str]:
    """A score row per segment, or its one-line error: when a batch fails, its segments are
    retried one by one so only the culprit fails. `text`: where caption features come from
    (default: the engine's encoder)."""
    try:
        results = engine.score_segments(waves, captions, batch_size, streams=1, text=text)
    except Exception as exc:
        if len(waves) == 1:
            return [f"scoring failed: {one_line(exc)}"]
        out: list[np.ndarray | str] = []
        for wave, caption in zip(waves, captions):
            out.extend(score_segments_safely(engine, [wave], [caption], 1, text))
        return out
    return list(results)


def _apply(segments: list[_Segment], results: list[np.ndarray | str]) -> None:
    """Hand each scored segment's row (or error) to its file (on the loop's thread only)."""
    for seg, result in zip(segments, results):
        if isinstance(result, str):
            seg.state.outstanding -= 1
            seg.state.fail(f"{seg.state.job.path}: {result}")
        else:
            seg.state.add(result, seg.wave.shape[0])


class _CaptionFeatures:
    """Token features of the captions the run still needs (a CaptionSource for the engine).

    Captions of upcoming jobs are encoded `span` jobs at a time (a full text batch, whatever the
    audio batch size; with concurrent streams, a chunk's worth, so that each stream encodes its
    own chunk's captions while another runs the audio model instead of waiting for it), each
    distinct caption once; encoding runs outside the lock, and a stream that needs a caption
    another is encoding waits for that one. A caption's features are dropped when the last job
    that uses it is finished: memory follows the look-ahead (plus captions repeated later in the
    run, as MusicEval's prompts), never the length of the run, and nothing is encoded twice."""

    def __init__(self, engine: ScoreEngine, jobs: list[Job], span: int) -> None:
        self.engine = engine
        self.jobs = jobs
        self.span = max(1, span)
        self.next = 0
        self.uses: Counter[str] = Counter(j.caption for j in jobs if self._counted(j))
        self.features: dict[str, np.ndarray] = {}
        self.pending: dict[str, threading.Event] = {}  # being encoded by some stream
        self._lock = threading.Lock()  # guards next, features, pending and uses

    @staticmethod
    def _counted(job: Job) -> bool:
        return bool(job.caption) and job.error is None

    def _encode(self, captions: list[str]) -> dict[str, np.ndarray]:
        text = self.engine.text
        assert text is not None
        uncached = getattr(text, "encode_uncached", None)  # a TextEncoder; a CaptionTable only looks up
        if uncached is not None:
            return uncached(captions)
        return dict(zip(captions, text.encode(captions)))

    def _encode_claimed(self, todo: list[str], done: threading.Event) -> None:
        """Encode captions this thread claimed (in `pending`), store them, wake their waiters."""
        try:
            got = self._encode(todo)
        except Exception:  # `encode` retries them for the chunk that needs them, clip by clip
            got = {}
        with self._lock:
            self.features.update(got)
            for c in todo:
                self.pending.pop(c, None)
        done.set()

    def ensure(self, upto: int) -> None:
        """Captions of jobs [.. upto] are encoded, or being encoded (plus the following ones, up
        to `span` jobs from the last claim)."""
        if self.engine.text is None:
            return
        with self._lock:
            if upto < self.next:
                return
            end = max(upto + 1, self.next + self.span)
            todo = list(dict.fromkeys(j.caption for j in self.jobs[self.next : end] if self._counted(j)
                                      and j.caption not in self.features and j.caption not in self.pending))
            self.next = end
            done = threading.Event()
            for c in todo:
                self.pending[c] = done
        if todo:
            self._encode_claimed(todo, done)  # type: ignore[arg-type]

    def encode(self, captions: Sequence[str]) -> list[np.ndarray]:
        for c in dict.fromkeys(captions):
            with self._lock:
                waiting = self.pending.get(c)
            if waiting is not None:
                waiting.wait()
        with self._lock:
            missing = [c for c in dict.fromkeys(captions) if c not in self.features]
        if missing:  # a batch that failed in `ensure`: encode these alone, errors to the caller
            got = self._encode(missing)
            with self._lock:
                self.features.update(got)
        with self._lock:
            return [self.features[c] for c in captions]

    def release(self, job: Job) -> None:
        """`job` is finished: forget its caption when no later job needs it."""
        if not self._counted(job):
            return
        assert job.caption is not None
        with self._lock:
            self.uses[job.caption] -= 1
            if self.uses[job.caption] <= 0:
                self.features.pop(job.caption, None)
                del self.uses[job.caption]


def score_jobs(engine: ScoreEngine, jobs: Iterable[Job], options: PipelineOptions) -> Iterator[FileResult]:
    """Score every job; yield one FileResult per job, in input order, as soon as it is final.

    A reader pool decodes files ahead; files longer than the bundle's window are read window by
    window (a background thread keeps at most one batch of them ready). Windows of all files
    are pooled into chunks, sorted by length, batched, and aggregated per file weighted by length,
    then finished: clamped to each target's range, spreads for a distribution model (`ScoreEngine.finish`).
    """
    spec = AudioSpec(engine.sample_rate, engine.window_seconds)
    jobs = list(jobs)
    batch_size = max(1, options.batch_size)
    chunk_size = batch_size * max(1, options.chunk_batches)
    streams = max(1, engine.streams)
    captions = _CaptionFeatures(engine, jobs, engine.options.text_batch_size if streams == 1 else chunk_size)

    def score_chunk(segments: list[_Segment], upto: int) -> list[np.ndarray | str]:
        captions.ensure(upto)
        return score_segments_safely(engine, [s.wave for s in segments], [s.caption for s in segments], batch_size,
                                     captions if engine.text is not None else None)

    def finish(state: FileState) -> FileResult:
        captions.release(state.job)
        return state.result(engine.sample_rate, engine.finish)

    # Chunks in flight: one per stream plus one queued, so no stream waits while the next chunk is
    # gathered; memory is about streams + 3 chunks of windows (with the reader's look-ahead).
    pool = ThreadPoolExecutor(streams, thread_name_prefix="mos-score") if streams > 1 else None
    pending: deque[tuple[list[_Segment], Future[list[np.ndarray | str]]]] = deque()

    def decode(job: Job) -> Decoded:
        if job.error is not None:
            return Decoded(error=job.error)
        return decode_file(job.path, spec)

    # The next chunk decodes while this one runs: memory is about two chunks of windows.
    decoded = prefetch_ordered(jobs, decode, options.workers, ahead=chunk_size + 2 * options.workers)
    order: deque[FileState] = deque()
    long_iter: BackgroundIterator[np.ndarray] | None = None
    long_state: FileState | None = None
    exhausted = False
    pulled = 0  # jobs taken from the reader so far
    try:
        while True:
            segments: list[_Segment] = []
            while len(segments) < chunk_size:
                if long_iter is not None and long_state is not None:
                    try:
                        wave = next(long_iter)
                    except StopIteration:
                        long_state.complete = True
                        long_iter = long_state = None
                        continue
                    except Exception as exc:
                        long_state.fail(one_line(exc, long_state.job.path))
                        long_iter.close()
                        long_iter = long_state = None
                        continue
                    long_state.outstanding += 1
                    long_state.samples += wave.shape[0]
                    long_state.windows += 1
                    segments.append(_Segment(long_state, wave, long_state.job.caption))
                    continue
                nxt = next(decoded, None)
                if nxt is None:
                    exhausted = True
                    break
                job, dec = nxt
                state = FileState(job, index=pulled)
                pulled += 1
                order.append(state)
                if dec.error is not None:
                    state.fail(dec.error)
                elif dec.long:
                    long_iter = spec.windows(job.path, prefetch=batch_size)
                    long_state = state
                else:
                    assert dec.wave is not None
                    state.outstanding = 1
                    state.samples = dec.wave.shape[0]
                    state.windows = 1
                    state.complete = True
                    segments.append(_Segment(state, dec.wave, job.caption))
            if segments:
                upto = max(s.state.index for s in segments)
                if pool is None:
                    _apply(segments, score_chunk(segments, upto))
                else:
                    pending.append((segments, pool.submit(score_chunk, segments, upto)))
                del segments
            done = exhausted and long_iter is None
            # Wait for the oldest chunk when every stream is busy and one more is queued (or at the end).
            while pending and (len(pending) > streams or done):
                chunk, future = pending.popleft()
                _apply(chunk, future.result())
                del chunk, future
                while order and order[0].finished:
                    yield finish(order.popleft())
            while order and order[0].finished:
                yield finish(order.popleft())
            if done:
                break
        while order:  # only reached when every state is final
            yield finish(order.popleft())
    finally:
        if pool is not None:  # on an early close (Ctrl-C, an error downstream) drop what has not started
            pool.shutdown(wait=True, cancel_futures=True)
        if long_iter is not None:
            long_iter.close()
        close = getattr(decoded, "close", None)
        if close is not None:
            close()
