"""Deterministic synthetic clips (noise + tones) and captions for tracing, calibration and checks."""

from __future__ import annotations

import numpy as np

CAPTIONS: tuple[str, ...] = (
    "a dog barks twice in the distance",
    "rain falls on a tin roof while thunder rolls far away",
    "a solo piano plays a slow and gentle melody in a quiet room",
    "people talk and laugh in a busy cafe as cups clink",
    "an engine starts, idles for a moment and then drives off",
    "birds chirp at dawn",
    "a crowd cheers loudly after a goal and a whistle blows",
    "upbeat electronic dance music with a heavy bass line and bright synthesizer chords",
)

# Longer than any sensible max_tokens: exercises truncation on both tokenizers.
LONG_CAPTION = " ".join(["a very long caption about an orchestra tuning up before a concert"] * 12)


def synthetic_clip(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Noise plus a few tones with a slow envelope, float32 in [-1, 1], length round(seconds*sr)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * sample_rate)))
    t = np.arange(n, dtype=np.float64) / sample_rate
    x = rng.normal(0.0, rng.uniform(0.01, 0.08), n)
    for _ in range(int(rng.integers(1, 4))):
        freq = rng.uniform(80.0, min(4000.0, sample_rate / 2 - 100.0))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t + rng.uniform(0, 2 * np.pi))
        x += rng.uniform(0.05, 0.3) * env * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def synthetic_clips(count: int, seconds: float, sample_rate: int, seed: int = 1234) -> list[np.ndarray]:
    """`count` clips of `seconds` each (deterministic for a given seed)."""
    return [synthetic_clip(seconds, sample_rate, seed + k) for k in range(count)]


def caption_for(index: int) -> str:
    return CAPTIONS[index % len(CAPTIONS)]
