"""Audio decoding shared by training and scoring: soundfile decode, mono mixdown, resampling."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from mos.errors import AudioError, one_line

# File name extensions of each libsndfile major format (soundfile.available_formats() names).
# RAW is left out: a header-less file cannot be decoded without being told its layout.
_FORMAT_EXTENSIONS = {
    "WAV": (".wav",),
    "WAVEX": (".wav",),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",),
    "AIFF": (".aiff", ".aif", ".aifc"),
    "AU": (".au", ".snd"),
    "CAF": (".caf",),
    "W64": (".w64",),
    "RF64": (".rf64",),
    "NIST": (".sph", ".nist"),
    "IRCAM": (".sf",),
    "VOC": (".voc",),
    "SVX": (".iff", ".8svx", ".svx"),
    "PAF": (".paf",),
    "SD2": (".sd2",),
    "AVR": (".avr",),
    "HTK": (".htk",),
    "SDS": (".sds",),
    "MAT4": (".mat",),
    "MAT5": (".mat",),
    "PVF": (".pvf",),
    "WVE": (".wve",),
    "XI": (".xi",),
    "MPC2K": (".mpc",),
}


def decodable_extensions(formats: dict[str, str] | None = None) -> tuple[str, ...]:
    """Extensions (lower case, with the dot) of the formats the installed libsndfile reads."""
    available = {name.upper() for name in (sf.available_formats() if formats is None else formats)}
    out: list[str] = []
    for name, extensions in _FORMAT_EXTENSIONS.items():
        if name in available:
            out += [ext for ext in extensions if ext not in out]
    return tuple(out)


# What a folder scan picks up and what `audio_stem` strips: every format libsndfile decodes here.
AUDIO_EXTENSIONS = decodable_extensions()


def is_audio_name(name: str) -> bool:
    """True when the file name's extension (any case) is one the installed libsndfile reads."""
    return name.lower().endswith(AUDIO_EXTENSIONS)


def audio_stem(name: str) -> str:
    """`dir/x.wav` -> `x`: the basename without a known audio extension (any case); other names
    keep their extension (`x.json` stays `x.json`). Forward and back slashes both separate."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    lower = base.lower()
    for ext in AUDIO_EXTENSIONS:
        if lower.endswith(ext):
            return base[: -len(ext)]
    return base


# Everything soundfile/libsndfile raises for a file it cannot read (LibsndfileError is a
# RuntimeError subclass; TypeError/ValueError come from odd headers, EOFError/OSError from I/O).
_DECODE_ERRORS = (RuntimeError, ValueError, TypeError, EOFError, OSError)


def wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file whose data chunk declares more bytes than the file holds (a cut-off
    copy or download, which decoders silently read short), the problem in words; else None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            order = "little" if head[:4] == b"RIFF" else "big"
            pos = 12
            for _ in range(64):  # a WAV has a handful of chunks before its data
                f.seek(pos)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                length = int.from_bytes(chunk[4:8], order)
                if chunk[:4] == b"data":
                    if length in (0, 0xFFFFFFFF):  # streamed WAV: length unknown, not a truncation
                        return None
                    have = size - pos - 8
                    if have < length:
                        return f"{path}: truncated WAV: header declares {length} bytes of audio, the file holds {have}"
                    return None
                pos += 8 + length + (length & 1)
    except OSError:
        return None
    return None


def _check_file(path: Path) -> None:
    """Raise AudioError for a missing path, a directory or a zero-byte file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot open: {one_line(exc)}") from None
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if st.st_size == 0:
        raise AudioError(f"{path}: empty audio file (0 bytes)")
    truncated = wav_truncation(path)
    if truncated is not None:
        raise AudioError(truncated)


def _mixdown(block: np.ndarray) -> np.ndarray:
    """[frames, channels] float32 -> [frames] float32 mono."""
    channels = block.shape[1]
    if channels == 1:
        return block[:, 0]
    if channels == 2:
        return 0.5 * (block[:, 0] + block[:, 1])
    return block.sum(axis=1, dtype=np.float32) * np.float32(1.0 / channels)


# The one resampler of training and scoring: scipy.signal.resample_poly's polyphase filter (a
# Kaiser-windowed sinc, beta 5, 10 zero crossings per side of the slower rate), computed here with
# numpy: the same taps, the same output samples (tests/test_audio.py compares the two), without
# importing scipy.signal, which took a second of a one-clip `mos score` on 44.1 kHz audio. libsoxr
# (HQ) was measured as a replacement: twice as fast on 44.1 kHz input, but it changed the MUSHRA
# cross-validation's out-of-fold SRCC of the aisfx model from 0.662 to 0.485 (seed 0;
# benchmarks/README.md), far past the 0.01 any speed-up may cost. Named in the feature cache's key.
RESAMPLER = "scipy-resample_poly"


def lowpass_taps(up: int, down: int) -> tuple[np.ndarray, int]:
    """resample_poly's anti-aliasing filter for coprime `up`/`down` (scipy.signal.firwin with
    window ('kaiser', 5.0), cutoff 1/max(up, down), unit gain at DC), float64, and its half length."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    m = np.arange(2 * half_len + 1, dtype=np.float64) - half_len
    cutoff = 1.0 / max_rate
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(2 * half_len + 1, 5.0)
    return h / h.sum(), half_len


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """`x` (1-D) upsampled by `up`, low-pass filtered, downsampled by `down`: the samples of
    scipy.signal.resample_poly(x, up, down) (zero padding at the ends), computed per polyphase
    branch as strided matrix-vector products in x's dtype."""
    g = math.gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    if up == down == 1:
        return x.copy()
    n_out = -(-x.shape[0] * up // down)
    taps, half_len = lowpass_taps(up, down)
    taps = taps.astype(x.dtype) * x.dtype.type(up)
    per_branch = -(-taps.shape[0] // up)
    branches = np.zeros(per_branch * up, dtype=x.dtype)
    branches[: taps.shape[0]] = taps
    # branches[r, m] = taps[r + up * m], reversed so that taps meet samples in increasing order.
    branches = branches.reshape(per_branch, up).T[:, ::-1].copy()
    # Output i is sum_k taps[k] * xup[i * down + half_len - k], xup = x with up - 1 zeros after
    # each sample; the outputs i0, i0 + up, i0 + 2 up, ... share a branch and step x by `down`.
    last = ((n_out - 1) * down + half_len) // up
    padded = np.concatenate([np.zeros(per_branch, x.dtype), x, np.zeros(max(0, last - x.shape[0] + 1), x.dtype)])
    y = np.empty(n_out, dtype=x.dtype)
    step = padded.strides[0]
    for i0 in range(min(up, n_out)):
        j0 = i0 * down + half_len
        start = per_branch + j0 // up - (per_branch - 1)
        count = (n_out - i0 + up - 1) // up
        rows = np.lib.stride_tricks.as_strided(padded[start:], shape=(count, per_branch), strides=(down * step, step),
                                               writeable=False)
        y[i0::up] = rows @ branches[j0 % up]
    return y


def _resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling with up/down reduced by their gcd; no-op when rates are equal."""
    if source_rate == target_rate:
        return x
    return resample_poly(x, int(target_rate), int(source_rate))


def _all_finite(x: np.ndarray) -> bool:
    """True when no sample is NaN or inf (a sum is finite iff every term is, barring overflow)."""
    if np.isfinite(np.sum(x, dtype=np.float64)):
        return True
    return bool(np.isfinite(x).all())


def prepare_block(block: np.ndarray, source_rate: int, sample_rate: int, path: Path | str) -> np.ndarray:
    """Mix a decoded [frames, channels] block to mono, check it and resample it to `sample_rate`.

    This is the one code path behind `read_audio` and `iter_audio_windows`.
    """
    mono = _mixdown(block)
    if not _all_finite(mono):
        raise AudioError(f"{path}: contains NaN or inf samples")
    out = _resample(mono, source_rate, sample_rate)
    return np.ascontiguousarray(out, dtype=np.float32)


def read_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Decode a whole file to contiguous float32 mono at `sample_rate` (AudioError if unusable)."""
    p = Path(path)
    _check_file(p)
    try:
        data, source_rate = sf.read(p, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as exc:
        raise AudioError(f"{path}: cannot decode audio: {one_line(exc)}") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{path}: empty audio file (0 frames)")
    return prepare_block(data, int(source_rate), sample_rate, path)


def audio_duration(path: Path | str) -> float:
    """Duration in seconds from the file header, without decoding (AudioError if unreadable)."""
    p = Path(path)
    _check_file(p)
    try:
        info = sf.info(p)
    except _DECODE_ERRORS as exc:
        raise AudioError(f"{path}: cannot decode audio: {one_line(exc)}") from None
    if info.samplerate <= 0:
        raise AudioError(f"{path}: invalid sample rate {info.samplerate}")
    return float(info.frames) / float(info.samplerate)


def iter_audio_windows(path: Path | str, sample_rate: int, window_seconds: float) -> Iterator[np.ndarray]:
    """Yield float32 mono windows at `sample_rate`, reading `window_seconds` of source at a time.

    Memory stays one window whatever the file length; the last window is shorter. Each block is
    mixed and resampled on its own (tiny edge effects at block boundaries). A file shorter than
    one window yields exactly what `read_audio` returns.
    """
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    p = Path(path)
    _check_file(p)
    try:
        handle = sf.SoundFile(p)
    except _DECODE_ERRORS as exc:
        raise AudioError(f"{path}: cannot decode audio: {one_line(exc)}") from None
    with handle:
        source_rate = int(handle.samplerate)
        block_frames = max(1, int(round(window_seconds * source_rate)))
        yielded = False
        while True:
            try:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
            except _DECODE_ERRORS as exc:
                raise AudioError(f"{path}: cannot decode audio: {one_line(exc)}") from None
            if block.shape[0] == 0 or block.shape[1] == 0:
                break
            yielded = True
            yield prepare_block(block, source_rate, sample_rate, path)
            if block.shape[0] < block_frames:
                break
        if not yielded:
            raise AudioError(f"{path}: empty audio file (0 frames)")
