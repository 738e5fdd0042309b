"""A long clip's windows: how a clip held in memory is cut into them, and how their scores make
the clip's score, for `mos score`, the trainer's validation and `mos distill` alike. numpy only
(no torch): the runtime imports it.

A clip longer than the model's window is cut into consecutive windows of that many samples (the
last one shorter; `mos.audio.cut_windows`, also over a file read in blocks). Each window is scored
unclamped; the clip's score is the mean of its windows' scores weighted by each window's length
in samples (`window_mean`), and only then clamped to the target's range. A model that predicts
the listener spread gives each window a distribution; the clip's is the windows' mixture
(`window_mixture`): its mean is `window_mean` of the means, and its spread comes from
`window_mean` of the second moments spread^2 + score^2 (`second_moment`, `spread_of`).
"""

from __future__ import annotations

import numpy as np

from mos.audio import cut_windows


def split_windows(wave: np.ndarray, window: int) -> list[np.ndarray]:
    """Cut an in-memory waveform into consecutive windows of `window` samples (last one shorter;
    views of `wave`): mos.audio.cut_windows, the cut `iter_audio_windows` makes of a file."""
    if wave.shape[0] <= window:
        return [wave]
    return list(cut_windows([wave], window))


def window_mean(scores: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A clip's score from its windows' rows [n, k] and their lengths in samples [n]: the mean
    weighted by length -> [k], float64."""
    w = np.asarray(lengths, dtype=np.float64)
    return (np.asarray(scores, dtype=np.float64) * w[:, None]).sum(axis=0) / w.sum()


def second_moment(scores: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """spread^2 + score^2: what averages over a clip's windows the way its scores do."""
    return np.asarray(spreads, dtype=np.float64) ** 2 + np.asarray(scores, dtype=np.float64) ** 2


def spread_of(mean: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The spread back from a mean and a second moment, sqrt(second - mean^2) (never negative)."""
    return np.sqrt(np.maximum(second - mean ** 2, 0.0))


def window_mixture(scores: np.ndarray, spreads: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A clip's (score, spread) [k] from its windows' scores and spreads [n, k]: the mixture of the
    windows' distributions, weighted by length."""
    mean = window_mean(scores, lengths)
    return mean, spread_of(mean, window_mean(second_moment(scores, spreads), lengths))
