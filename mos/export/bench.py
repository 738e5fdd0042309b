"""Small ORT measurements shared by the int8 report and verification: speed, MAE, padding gap."""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import numpy as np

from mos.export.ort_side import OrtAudio


def ms_per_clip(
    sessions: Sequence[OrtAudio], clip: np.ndarray, text: np.ndarray | None, repeats: int = 20
) -> list[tuple[float, float]]:
    """(median, fastest) ms of one batch-1 run per session, runs interleaved so that load from
    other processes hits every session alike; two warm-up runs each."""
    feats = [text] if text is not None else None
    for audio in sessions:
        for _ in range(2):
            audio.scores([clip], feats)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeats):
        for k, audio in enumerate(sessions):
            start = time.perf_counter()
            audio.scores([clip], feats)
            times[k].append((time.perf_counter() - start) * 1000.0)
    return [(statistics.median(t), min(t)) for t in times]


def scores_alone(
    audio: OrtAudio, clips: Sequence[np.ndarray], text: Sequence[np.ndarray] | None
) -> np.ndarray:
    """[n_clips, n_targets]: each clip scored as a batch of one."""
    rows = [audio.scores([c], [text[i]] if text is not None else None)[0] for i, c in enumerate(clips)]
    return np.stack(rows)


def padding_gap(
    audio: OrtAudio, clips: Sequence[np.ndarray], text: Sequence[np.ndarray] | None
) -> tuple[float, int, int]:
    """(max |batched - alone|, clip index, target index) over one zero-padded batch of `clips`."""
    alone = scores_alone(audio, clips, text)
    batched = audio.scores(clips, text)
    diff = np.abs(batched - alone)
    i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return float(diff[i, j]), int(i), int(j)
