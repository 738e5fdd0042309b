"""Audio decoding shared by training and scoring: soundfile decode, mono mixdown, resampling."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
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
# numpy as a stream that keeps its state across blocks: a file read in blocks gives the samples of
# the whole file resampled at once, which are scipy's (tests/test_audio.py compares them), without
# importing scipy.signal, which slows a short `mos score`'s start-up (its cost, and libsoxr's
# figures, measured and not applied: docs/onnx-notes.md). Named in the feature cache's key: the
# whole-file samples are those of the earlier one-shot code, so features cached before stay valid.
RESAMPLER = "scipy-resample_poly"


def window_samples(seconds: float, sample_rate: int) -> int:
    """Samples in a window of `seconds` at `sample_rate` (at least one): the one rounding of the
    training window, the bundle's scoring window and `iter_audio_windows`."""
    return max(1, int(round(seconds * sample_rate)))


def lowpass_taps(up: int, down: int) -> tuple[np.ndarray, int]:
    """resample_poly's anti-aliasing filter for coprime `up`/`down` (scipy.signal.firwin with
    window ('kaiser', 5.0), cutoff 1/max(up, down), unit gain at DC), float64, and its half length."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    m = np.arange(2 * half_len + 1, dtype=np.float64) - half_len
    cutoff = 1.0 / max_rate
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(2 * half_len + 1, 5.0)
    return h / h.sum(), half_len


class Resampler:
    """Streaming polyphase resampler from `source_rate` to `target_rate` (resample_poly's filter).

    Feed consecutive blocks to `process`, the last one with `last=True`: the outputs, joined, are
    the samples of `resample_poly` on the joined input (zero padding at both ends of the whole
    signal, none between blocks). Each call returns the outputs its input so far fully
    determines; the state is the source samples the next outputs still need (about
    10 * max(up, down) / up of them), so memory stays flat whatever the signal's length.
    """

    def __init__(self, source_rate: int, target_rate: int, dtype: np.dtype | type = np.float32) -> None:
        g = math.gcd(int(source_rate), int(target_rate))
        self.up, self.down = int(target_rate) // g, int(source_rate) // g
        self.dtype = np.dtype(dtype)
        self._held = np.zeros(0, self.dtype)  # source samples _held_start.. up to the block being fed
        self._held_start = 0
        self._received = 0  # source samples fed so far
        self._next = 0  # index of the next output sample
        self._done = False
        if self.up == self.down == 1:
            return
        taps, self._half_len = lowpass_taps(self.up, self.down)
        taps = taps.astype(self.dtype) * self.dtype.type(self.up)
        self._per_branch = -(-taps.shape[0] // self.up)
        branches = np.zeros(self._per_branch * self.up, dtype=self.dtype)
        branches[: taps.shape[0]] = taps
        # branches[r, m] = taps[r + up * m], reversed so that taps meet samples in increasing order.
        self._branches = branches.reshape(self._per_branch, self.up).T[:, ::-1].copy()

    def _last_source(self, i: int) -> int:
        """The highest source index output `i` reads (it reads per_branch samples up to it)."""
        return (i * self.down + self._half_len) // self.up

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """The output samples that `x` (1-D, the next source block) completes; with `last`, every
        remaining one (the signal ends after `x`). No call may follow the last."""
        if self._done:
            raise ValueError("Resampler.process called after the last block")
        x = np.asarray(x, dtype=self.dtype)
        self._done = last
        if self.up == self.down == 1:
            return x
        self._received += x.shape[0]
        n = self._received
        if last:
            end = -(-n * self.up // self.down)
        else:  # outputs i whose last source index is below n: i * down + half_len < n * up
            top = n * self.up - self._half_len - 1
            end = top // self.down + 1 if top >= 0 else 0
        start, end = self._next, max(self._next, end)
        y = np.empty(end - start, dtype=self.dtype)
        if end > start:
            lo = self._last_source(start) - (self._per_branch - 1)
            self._outputs(self._source(x, lo, self._last_source(end - 1) + 1), lo, start, y)
        self._next = end
        if last:
            self._held = np.zeros(0, self.dtype)
        else:  # from the first sample the next output reads on
            keep_from = min(n, max(self._held_start, self._last_source(end) - (self._per_branch - 1)))
            self._held, self._held_start = self._source(x, keep_from, n), keep_from
        return y

    def _source(self, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """A new array of source samples lo..hi-1 from the held ones and `x` (the block just
        received, which follows them), zeros before the signal and past its end."""
        out = np.zeros(hi - lo, dtype=self.dtype)
        for part, part_start in ((self._held, self._held_start), (x, self._received - x.shape[0])):
            a, b = max(lo, part_start), min(hi, part_start + part.shape[0])
            if b > a:
                out[a - lo : b - lo] = part[a - part_start : b - part_start]
        return out

    def _outputs(self, span: np.ndarray, lo: int, start: int, y: np.ndarray) -> None:
        """Outputs start..start+len(y)-1 into `y` from `span` (source samples from index `lo`),
        per polyphase branch as strided matrix-vector products."""
        per_branch, end = self._per_branch, start + y.shape[0]
        step = span.strides[0]
        # Outputs i0, i0 + up, i0 + 2 up, ... share a branch and step the source by `down`.
        for i0 in range(start, min(start + self.up, end)):
            j0 = i0 * self.down + self._half_len
            first = j0 // self.up - (per_branch - 1) - lo
            count = (end - i0 + self.up - 1) // self.up
            rows = np.lib.stride_tricks.as_strided(span[first:], shape=(count, per_branch),
                                                   strides=(self.down * step, step), writeable=False)
            y[i0 - start :: self.up] = rows @ self._branches[j0 % self.up]


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """`x` (1-D) upsampled by `up`, low-pass filtered, downsampled by `down`: the samples of
    scipy.signal.resample_poly(x, up, down) (zero padding at the ends), in x's dtype; the
    `Resampler` stream in one block."""
    x = np.asarray(x)
    if int(up) == int(down):
        return x.copy()
    return Resampler(int(down), int(up), x.dtype).process(x, last=True)


def _all_finite(x: np.ndarray) -> bool:
    """True when no sample is NaN or inf (a sum is finite iff every term is, barring overflow)."""
    if np.isfinite(np.sum(x, dtype=np.float64)):
        return True
    return bool(np.isfinite(x).all())


def mono_block(block: np.ndarray, path: Path | str) -> np.ndarray:
    """Mix a decoded [frames, channels] block to float32 mono; AudioError on NaN or inf."""
    mono = _mixdown(block)
    if not _all_finite(mono):
        raise AudioError(f"{path}: contains NaN or inf samples")
    return mono


def prepare_block(block: np.ndarray, source_rate: int, sample_rate: int, path: Path | str) -> np.ndarray:
    """A whole decoded [frames, channels] signal mixed to mono, checked and resampled to
    `sample_rate` (the `Resampler` in one block, as `iter_audio_windows` streams it)."""
    mono = mono_block(block, path)
    out = Resampler(source_rate, sample_rate).process(mono, last=True)
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


def cut_windows(blocks: Iterable[np.ndarray], window: int) -> Iterator[np.ndarray]:
    """Consecutive windows of `window` samples over the joined 1-D `blocks`, the last one shorter
    (none empty): the cut of training's `split_windows`, over a stream. A window inside one block
    is a view of it; one across blocks is a copy."""
    held: list[np.ndarray] = []
    held_n = 0
    for block in blocks:
        pos, n = 0, block.shape[0]
        while pos < n:
            take = min(window - held_n, n - pos)
            if held_n == 0 and take == window:
                yield block[pos : pos + window]
            else:
                held.append(block[pos : pos + take])
                held_n += take
                if held_n == window:
                    yield np.concatenate(held)
                    held, held_n = [], 0
            pos += take
    if held_n:
        yield np.concatenate(held) if len(held) > 1 else held[0]


def iter_audio_windows(path: Path | str, sample_rate: int, window_seconds: float) -> Iterator[np.ndarray]:
    """Yield float32 mono windows of `window_samples(window_seconds, sample_rate)` samples, the
    last shorter: `split_windows(read_audio(path, sample_rate), window)`, read in blocks.

    The file is read about a window at a time and resampled by one `Resampler` that keeps its
    state across blocks, so memory stays about one window whatever the file's length, and the
    windows hold the samples of the whole file resampled at once (to float rounding).
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
        window = window_samples(window_seconds, sample_rate)
        yield from cut_windows(_resampled_blocks(handle, path, source_rate, sample_rate,
                                                 window_samples(window_seconds, source_rate)), window)


def _resampled_blocks(handle: sf.SoundFile, path: Path | str, source_rate: int, sample_rate: int,
                      block_frames: int) -> Iterator[np.ndarray]:
    """An open file read `block_frames` at a time, mixed to mono and resampled by one stream."""
    resampler = Resampler(source_rate, sample_rate)
    frames = 0
    while True:
        try:
            block = handle.read(block_frames, dtype="float32", always_2d=True)
        except _DECODE_ERRORS as exc:
            raise AudioError(f"{path}: cannot decode audio: {one_line(exc)}") from None
        n = block.shape[0] if block.shape[1] else 0
        if n:
            frames += n
            out = resampler.process(mono_block(block, path), last=n < block_frames)
        elif frames:
            out = resampler.process(np.zeros(0, np.float32), last=True)
        else:
            raise AudioError(f"{path}: empty audio file (0 frames)")
        if out.shape[0]:
            yield np.ascontiguousarray(out, dtype=np.float32)
        if n < block_frames:
            return
