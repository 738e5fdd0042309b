"""A reader pool that decodes and resamples files ahead of the session, in input order, memory bounded."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from mos.audio import audio_duration, iter_audio_windows, read_audio
from mos.errors import one_line

T = TypeVar("T")
R = TypeVar("R")



def prefetch_ordered(
    items: Iterable[T], fn: Callable[[T], R], workers: int, ahead: int
) -> Iterator[tuple[T, R]]:
    """Yield (item, fn(item)) in input order while up to `ahead` calls run or wait in a thread pool.

    `fn` must not raise (return errors as values). At most `ahead` results are held at a time.
    """
    ahead = max(1, ahead)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mos-reader")
    pending: deque[tuple[T, Future[R]]] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= ahead:
                head, fut = pending.popleft()
                yield head, fut.result()
        while pending:
            head, fut = pending.popleft()
            yield head, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


_DONE = object()


class BackgroundIterator(Generic[T]):
    """Runs an iterator in its own thread, keeping at most `maxsize` items ready (bounded memory).

    Exceptions raised by the source are re-raised in the consumer at the point they happened.
    """

    def __init__(self, source: Iterator[T], maxsize: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(source,), daemon=True, name="mos-windows")
        self._thread.start()

    def _put(self, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, source: Iterator[T]) -> None:
        try:
            for value in source:
                if not self._put(value):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    def __iter__(self) -> BackgroundIterator[T]:
        return self

    def __next__(self) -> T:
        value = self._queue.get()
        if value is _DONE:
            self._stop.set()
            raise StopIteration
        if isinstance(value, BaseException):
            self._stop.set()
            raise value
        return value  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the producer (it exits at its next item) and drop what it had queued."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


@dataclass
class Decoded:
    """A decoded file: `wave` (the whole file, at most one window long), or `long` (window it
    lazily with `windows()`), or `error` (a one-line message)."""

    wave: np.ndarray | None = None
    long: bool = False
    error: str | None = None


@dataclass(frozen=True)
class AudioSpec:
    """What the model wants: its sample rate and the window length long files are cut into."""

    sample_rate: int
    window_seconds: float

    def windows(self, path: Path, prefetch: int) -> BackgroundIterator[np.ndarray]:
        """The file's windows (mos.audio.iter_audio_windows), decoded ahead in a thread."""
        return BackgroundIterator(iter_audio_windows(path, self.sample_rate, self.window_seconds), prefetch)


def decode_file(path: Path, spec: AudioSpec) -> Decoded:
    """Decode a file no longer than one window whole (mos.audio.read_audio, as training does);
    mark longer ones for windowed reading. Never raises: problems come back as `error`."""
    try:
        if audio_duration(path) > spec.window_seconds:
            return Decoded(long=True)
        return Decoded(wave=read_audio(path, spec.sample_rate))
    except Exception as exc:  # MemoryError included: a row, not a crash
        return Decoded(error=one_line(exc, path))
