"""Batches of similar-length clips: sort a bounded chunk by length, pad with zeros, keep the order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_batches(lengths: Sequence[int], batch_size: int, equal_lengths: bool = False) -> list[list[int]]:
    """Indices into `lengths` grouped into batches of at most `batch_size`, similar lengths together
    (with `equal_lengths`, only equal lengths together: nothing is ever padded).

    Every index appears exactly once; callers scatter results back by index, so input order is
    restored whatever the grouping.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    size = max(1, int(batch_size))
    if not equal_lengths:
        return [order[start : start + size] for start in range(0, len(order), size)]
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < size and lengths[batches[-1][0]] == lengths[i]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def pad_waveforms(waves: Sequence[np.ndarray], multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Waveforms -> zero-padded [B, max length rounded up to `multiple`] float32 and lengths [B] int64.

    Rounding up bounds the number of distinct input shapes (each new shape costs a cuDNN
    algorithm search on CUDA); the model masks padding, so scores do not change.
    """
    lengths = np.array([w.shape[0] for w in waves], dtype=np.int64)
    width = max(1, int(lengths.max()))
    step = max(1, int(multiple))
    width = -(-width // step) * step
    out = np.zeros((len(waves), width), dtype=np.float32)
    for i, w in enumerate(waves):
        out[i, : w.shape[0]] = w
    return out, lengths


def pad_token_features(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-caption features [n_i, dim] -> text [B, max n_i, dim] (zeros past n_i) and lengths [B] int64."""
    lengths = np.array([f.shape[0] for f in features], dtype=np.int64)
    dim = features[0].shape[1]
    out = np.zeros((len(features), max(1, int(lengths.max())), dim), dtype=np.float32)
    for i, f in enumerate(features):
        out[i, : f.shape[0]] = f
    return out, lengths
