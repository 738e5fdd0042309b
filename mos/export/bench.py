"""Small measurements on runtime engines, shared by the int8 report and verification: speed,
scores of clips alone or as `mos score` scores them, and the padding gap."""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import numpy as np

from mos.runtime.engine import ScoreEngine

SCORE_CHUNK = 64


def ms_per_clip(
    engines: Sequence[ScoreEngine], clip: np.ndarray, caption: str | None, repeats: int = 20
) -> list[tuple[float, float]]:
    """(median, fastest) ms of one batch-1 run of the audio model per engine (caption features
    cached after the warm-up), runs interleaved so that load from other processes hits every
    engine alike; two warm-up runs each."""
    for engine in engines:
        for _ in range(2):
            engine.score_segments([clip], [caption], 1)
    times: list[list[float]] = [[] for _ in engines]
    for _ in range(repeats):
        for k, engine in enumerate(engines):
            start = time.perf_counter()
            engine.score_segments([clip], [caption], 1)
            times[k].append((time.perf_counter() - start) * 1000.0)
    return [(statistics.median(t), min(t)) for t in times]


def scores_alone(engine: ScoreEngine, clips: Sequence[np.ndarray], captions: Sequence[str | None]) -> np.ndarray:
    """[n_clips, n_targets (+ n_targets spreads)]: each clip scored as one segment in a batch of
    one (no windowing), unclamped."""
    return engine.unpack(engine.score_segments(list(clips), list(captions), 1))


def score_clips(engine: ScoreEngine, clips: Sequence[np.ndarray], captions: Sequence[str | None],
                chunk: int = SCORE_CHUNK) -> np.ndarray:
    """`engine.score_arrays` (as `mos score` scores: windows averaged, then clamped; every column
    of `engine.columns`) over `clips`, `chunk` clips at a time, so that a long validation set
    (kept on disk) is never all in memory."""
    rows = [engine.score_arrays([np.asarray(c) for c in clips[k: k + chunk]], list(captions[k: k + chunk]))
            for k in range(0, len(clips), chunk)]
    return np.concatenate(rows) if rows else np.zeros((0, len(engine.columns)))


def padding_gap(
    engine: ScoreEngine, clips: Sequence[np.ndarray], captions: Sequence[str | None]
) -> tuple[float, int, int]:
    """(max |batched - alone|, clip index, target index) over one zero-padded batch of `clips`."""
    alone = scores_alone(engine, clips, captions)
    batched = engine.unpack(engine.score_segments(list(clips), list(captions), len(clips)))
    diff = np.abs(batched - alone)
    i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return float(diff[i, j]), int(i), int(j)
