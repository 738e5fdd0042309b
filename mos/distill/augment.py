"""Degraded copies of training clips for `mos distill --augment N`, made with pedalboard (Spotify's
audio effects library): real codecs (MP3 at a low VBR quality, the GSM full-rate telephone codec),
band limits (resampling down and back up), reverb, clipping and gain, plus additive noise at a
drawn SNR. Each copy is written as a wav file in the run folder; the teacher scores it (and, for
embedding distillation, embeds it) itself, so its label fits the changed audio, which a human
rating would not. The same seed gives the same copies."""

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
# Band limits (Hz): the rate a copy is resampled down to and back: narrowband, wideband and
# super-wideband telephony, FM radio.
BAND_LIMITS = (8000, 11025, 16000, 22050, 32000)
CODECS = ("mp3", "gsm", "band")


@dataclass(frozen=True)
class Degradation:
    """What one copy does, in this order: codec ("mp3" at `mp3_quality` VBR 0-9, "gsm", "band"
    to `band_hz`, or None), reverb (room size; None: none), noise at `snr_db` (None: none),
    clipping at `clip_db` dBFS (None: none), gain (dB)."""

    gain_db: float
    snr_db: float | None = None
    codec: str | None = None
    mp3_quality: float = 0.0
    band_hz: int = 0
    reverb_room: float | None = None
    clip_db: float | None = None

    def describe(self) -> str:
        parts = []
        if self.codec == "mp3":
            parts.append(f"MP3 VBR quality {self.mp3_quality:.1f}")
        elif self.codec == "gsm":
            parts.append("GSM full-rate")
        elif self.codec == "band":
            parts.append(f"band-limited to {self.band_hz // 2} Hz")
        if self.reverb_room is not None:
            parts.append(f"reverb (room {self.reverb_room:.2f})")
        if self.snr_db is not None:
            parts.append(f"noise {self.snr_db:.0f} dB SNR")
        if self.clip_db is not None:
            parts.append(f"clipped at {self.clip_db:.0f} dBFS")
        parts.append(f"gain {self.gain_db:+.1f} dB")
        return ", ".join(parts)


def draw(rng: np.random.Generator) -> Degradation:
    """A random degradation: a codec or band limit 75% of the time (MP3 VBR 5-9.5, GSM, or a band
    limit of 4-16 kHz), reverb 25%, noise at 5-35 dB SNR 60%, clipping at -18 to -3 dBFS 20%, and a
    gain within +-6 dB."""
    codec = str(CODECS[int(rng.integers(len(CODECS)))]) if rng.random() < 0.75 else None
    return Degradation(
        gain_db=float(rng.uniform(-6.0, 6.0)),
        snr_db=float(rng.uniform(5.0, 35.0)) if rng.random() < 0.6 else None,
        codec=codec,
        mp3_quality=float(rng.uniform(5.0, 9.5)),
        band_hz=int(BAND_LIMITS[int(rng.integers(len(BAND_LIMITS)))]),
        reverb_room=float(rng.uniform(0.2, 0.9)) if rng.random() < 0.25 else None,
        clip_db=float(rng.uniform(-18.0, -3.0)) if rng.random() < 0.2 else None)


def apply(wave: np.ndarray, rate: int, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """The degraded waveform (float32 mono at `rate`, within [-1, 1], as long as `wave`)."""
    import pedalboard as pb

    x = np.asarray(wave, dtype=np.float32)
    effects: list = []
    if d.codec == "mp3" and rate in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
        effects.append(pb.MP3Compressor(vbr_quality=d.mp3_quality))
    elif d.codec == "gsm":
        effects.append(pb.GSMFullRateCompressor())
    elif d.codec == "band" and d.band_hz < rate:
        effects.append(pb.Resample(target_sample_rate=float(d.band_hz)))
    if d.reverb_room is not None:
        effects.append(pb.Reverb(room_size=d.reverb_room, wet_level=0.3, dry_level=0.8))
    if effects:
        x = pb.Pedalboard(effects)(x, rate)[: len(wave)]
    if d.snr_db is not None:
        power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-8
        x = (x + rng.normal(0.0, np.sqrt(power / 10 ** (d.snr_db / 10)), x.shape)).astype(np.float32)
    tail: list = [pb.Clipping(threshold_db=d.clip_db)] if d.clip_db is not None else []
    x = pb.Pedalboard([*tail, pb.Gain(gain_db=d.gain_db)])(x, rate)
    out = np.zeros(len(wave), dtype=np.float32)
    out[: len(x)] = x[: len(wave)]
    return np.clip(out, -1.0, 1.0)


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
