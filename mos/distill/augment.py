"""Degraded copies of training clips for `mos distill --augment N`: gain, additive noise and a
codec-like low-pass, written as wav files in the run folder. The teacher scores each copy
itself, so its label stays valid for the changed audio (a human rating would not)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mos.audio import read_audio
from mos.data.manifest import Item
from mos.errors import MosError, one_line

AUGMENT_DIR = "augmented"
# Low-pass cut-offs (Hz) of the codec-like band limit: telephone, wideband and super-wideband codecs.
CUTOFFS = (3400.0, 4000.0, 5500.0, 7000.0, 11000.0)


@dataclass(frozen=True)
class Degradation:
    """What one copy does: gain (dB), noise SNR (dB; None: no noise), low-pass cut-off (Hz; None: none)."""

    gain_db: float
    snr_db: float | None
    cutoff_hz: float | None

    def describe(self) -> str:
        parts = [f"gain {self.gain_db:+.1f} dB"]
        if self.snr_db is not None:
            parts.append(f"noise {self.snr_db:.0f} dB SNR")
        if self.cutoff_hz is not None:
            parts.append(f"low-pass {self.cutoff_hz:.0f} Hz")
        return ", ".join(parts)


def draw(rng: np.random.Generator) -> Degradation:
    """A random degradation: gain within +-6 dB; noise (SNR 5-35 dB) and low-pass each 70% of the time."""
    gain = float(rng.uniform(-6.0, 6.0))
    snr = float(rng.uniform(5.0, 35.0)) if rng.random() < 0.7 else None
    cutoff = float(CUTOFFS[int(rng.integers(len(CUTOFFS)))]) if rng.random() < 0.7 else None
    return Degradation(gain, snr, cutoff)


def apply(wave: np.ndarray, rate: int, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """The degraded waveform (float32, clipped to [-1, 1])."""
    x = wave.astype(np.float64)
    if d.cutoff_hz is not None and d.cutoff_hz < 0.45 * rate:
        from scipy.signal import butter, sosfilt

        x = sosfilt(butter(8, d.cutoff_hz, btype="low", fs=rate, output="sos"), x)
    if d.snr_db is not None:
        power = float(np.mean(x * x)) or 1e-8
        x = x + rng.normal(0.0, np.sqrt(power / 10 ** (d.snr_db / 10)), x.shape)
    x = x * 10 ** (d.gain_db / 20)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def degraded_copies(items: list[Item], copies: int, out_dir: Path, seed: int,
                    note: Callable[[str], None] | None = None) -> list[Item]:
    """`copies` degraded copies of every item as wav files under `out_dir` (at the clip's own rate),
    unrated (targets are filled in by the caller), with the source's caption and system. The same
    seed gives the same copies; files already written are reused (a resumed run)."""
    out: list[Item] = []
    failed: list[str] = []
    for k in range(copies):
        for i, it in enumerate(items):
            path = out_dir / f"copy{k + 1}" / f"{i:06d}_{it.path.stem}.wav"
            if not path.is_file():
                # One generator per (seed, copy, clip): a copy does not depend on which others exist.
                rng = np.random.default_rng([seed, k, i, zlib.crc32(it.id.encode("utf-8"))])
                try:
                    rate = int(sf.info(str(it.path)).samplerate)
                    wave = read_audio(it.path, rate)
                except Exception as exc:  # an unreadable clip is left out of the copies, and named
                    failed.append(one_line(exc, path=it.path, limit=120))
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.stem + ".tmp.wav")
                sf.write(tmp, apply(wave, rate, draw(rng), rng), rate, subtype="FLOAT")
                tmp.replace(path)  # a kill never leaves a half-written copy under the final name
            out.append(Item(id=f"copy{k + 1}/{it.id}", path=path, caption=it.caption, system=it.system))
    if failed and note is not None:
        note(f"augment: {len(failed)} clip(s) could not be read and have no copies (first: {failed[0]})")
    if copies and not out:
        raise MosError(f"{out_dir}: no degraded copy could be made (no readable training clip)")
    return out
