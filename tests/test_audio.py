"""Tests for mos.audio: real files of many formats, rates, channel counts and broken inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mos.audio import AUDIO_EXTENSIONS, audio_duration, audio_stem, decodable_extensions, is_audio_name, iter_audio_windows, read_audio
from mos.errors import AudioError

RATE = 16000


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


def assert_one_line_audio_error(excinfo: pytest.ExceptionInfo, name: str) -> None:
    message = str(excinfo.value)
    assert name in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_extensions_are_the_formats_libsndfile_reads(tmp_path: Path) -> None:
    """Every listed extension decodes (a file written in that format here), every format this
    libsndfile has is listed (mp3 included where it reads mp3), and no other name is audio."""
    formats = sf.available_formats()
    assert AUDIO_EXTENSIONS == decodable_extensions(formats)
    written = 0
    for fmt in formats:
        for ext in decodable_extensions({fmt: ""}):
            path = tmp_path / f"clip_{fmt}{ext.upper() if written % 2 else ext}"
            sf.write(path, sine(440.0, 16000, 0.3), 16000, format=fmt, subtype=sf.default_subtype(fmt))
            assert is_audio_name(path.name), path.name
            assert read_audio(path, RATE).size > 0 and audio_stem(path.name) == f"clip_{fmt}"
            written += 1
    assert written >= len(AUDIO_EXTENSIONS) and {".wav", ".flac", ".ogg"} <= set(AUDIO_EXTENSIONS)
    assert (".mp3" in AUDIO_EXTENSIONS) == ("MP3" in formats)
    assert decodable_extensions({"WAV": "", "RAW": "header-less"}) == (".wav",)  # RAW needs its layout told
    for name in ("talk.m4a", "clip.aac", "notes.txt", "clip.wav.json", "wav"):
        assert not is_audio_name(name), name
    assert audio_stem("dir/talk.m4a") == "talk.m4a"


def test_mp3(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} here does not read MP3")
    path = tmp_path / "speech.mp3"
    sf.write(path, sine(660.0, 22050, 1.0), 22050, format="MP3")
    y = read_audio(path, RATE)
    assert abs(len(y) - RATE) <= 1200  # mp3 frames pad the ends
    assert abs(peak_hz(y, RATE) - 660.0) < 5.0
    assert abs(audio_duration(path) - 1.0) < 0.06


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_subtypes(tmp_path: Path, subtype: str) -> None:
    x = sine(440.0, 22050, 0.5)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, x, 22050, subtype=subtype)
    assert sf.info(path).subtype == subtype
    y = read_audio(path, RATE)
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags["C_CONTIGUOUS"]
    assert abs(len(y) - round(len(x) * RATE / 22050)) <= 1
    assert abs(peak_hz(y, RATE) - 440.0) < 5.0
    tolerance = 0.05 if subtype == "PCM_U8" else 0.01
    assert abs(float(np.abs(y[200:-200]).max()) - 0.5) < tolerance


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_rates_preserve_frequency_and_length(tmp_path: Path, rate: int) -> None:
    x = sine(1000.0, rate, 0.5)
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, x, rate, subtype="PCM_16")
    y = read_audio(path, RATE)
    assert abs(len(y) - round(len(x) * RATE / rate)) <= 1
    assert abs(peak_hz(y, RATE) - 1000.0) < 5.0
    assert y.dtype == np.float32


def test_same_rate_is_untouched(tmp_path: Path) -> None:
    x = sine(300.0, RATE, 0.25)
    path = tmp_path / "same.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(path, RATE), x)


@pytest.mark.parametrize("channels", [1, 2, 6, 8])
def test_channels_mix_to_mean(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    x = (0.2 * rng.standard_normal((4000, channels))).astype(np.float32)
    path = tmp_path / f"c{channels}.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    y = read_audio(path, RATE)
    assert y.shape == (4000,)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("fmt,subtype,ext", [("FLAC", "PCM_16", ".flac"), ("OGG", "VORBIS", ".ogg")])
def test_flac_and_ogg(tmp_path: Path, fmt: str, subtype: str, ext: str) -> None:
    x = sine(880.0, 44100, 1.0)
    path = tmp_path / f"clip{ext}"
    sf.write(path, x, 44100, format=fmt, subtype=subtype)
    y = read_audio(path, RATE)
    assert abs(len(y) - RATE) <= (1 if fmt == "FLAC" else 160)
    assert abs(peak_hz(y, RATE) - 880.0) < 5.0
    assert abs(audio_duration(path) - 1.0) < 0.01


def test_unicode_and_space_in_name(tmp_path: Path) -> None:
    path = tmp_path / "dir with space" / "tést clip ü 音.wav"
    path.parent.mkdir()
    sf.write(path, sine(500.0, 48000, 0.2), 48000)
    assert len(read_audio(path, RATE)) == 3200
    assert len(read_audio(str(path), RATE)) == 3200
    assert abs(audio_duration(path) - 0.2) < 1e-9


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found") as excinfo:
        read_audio(tmp_path / "nope.wav", RATE)
    assert_one_line_audio_error(excinfo, "nope.wav")
    with pytest.raises(AudioError):
        audio_duration(tmp_path / "nope.wav")
    with pytest.raises(AudioError):
        next(iter_audio_windows(tmp_path / "nope.wav", RATE, 10.0))


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as excinfo:
        read_audio(path, RATE)
    assert_one_line_audio_error(excinfo, "zero.wav")
    with pytest.raises(AudioError, match="empty"):
        list(iter_audio_windows(path, RATE, 10.0))


def test_zero_frame_file(tmp_path: Path) -> None:
    path = tmp_path / "noframes.wav"
    sf.write(path, np.zeros((0, 1), np.float32), RATE)
    assert path.stat().st_size > 0
    with pytest.raises(AudioError, match="empty") as excinfo:
        read_audio(path, RATE)
    assert_one_line_audio_error(excinfo, "noframes.wav")
    with pytest.raises(AudioError, match="empty"):
        list(iter_audio_windows(path, RATE, 10.0))
    assert audio_duration(path) == 0.0


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError) as excinfo:
        read_audio(path, RATE)
    assert_one_line_audio_error(excinfo, "notes.wav")
    with pytest.raises(AudioError):
        audio_duration(path)
    with pytest.raises(AudioError):
        list(iter_audio_windows(path, RATE, 10.0))


@pytest.mark.parametrize("keep", [4, 12, 30, 44, 45, 100, 1001, 20000])
def test_truncated_wav_decodes_or_raises_audio_error(tmp_path: Path, keep: int) -> None:
    full = tmp_path / "full.wav"
    sf.write(full, sine(440.0, 22050, 1.0), 22050, subtype="PCM_16")
    path = tmp_path / f"cut{keep}.wav"
    path.write_bytes(full.read_bytes()[:keep])
    for call in (
        lambda: read_audio(path, RATE),
        lambda: np.concatenate(list(iter_audio_windows(path, RATE, 0.25))),
    ):
        try:
            y = call()
        except AudioError as exc:
            assert "\n" not in str(exc) and path.name in str(exc)
        else:
            assert y.dtype == np.float32 and 0 < len(y) <= RATE
            assert np.isfinite(y).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    x = sine(440.0, RATE, 0.3)
    x[1234] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="contains NaN or inf samples") as excinfo:
        read_audio(path, 22050)
    assert_one_line_audio_error(excinfo, "bad.wav")
    with pytest.raises(AudioError, match="NaN or inf"):
        list(iter_audio_windows(path, RATE, 0.1))
    stereo = tmp_path / "bad_stereo.wav"
    sf.write(stereo, np.stack([sine(440.0, RATE, 0.3), x], axis=1), RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or inf"):
        read_audio(stereo, RATE)


def test_windows_of_long_file(tmp_path: Path) -> None:
    """A 44.1 kHz 25 s file read in windows is the whole file resampled, then cut: the resampler
    keeps its state across blocks, so there are no filter edges at window boundaries."""
    from mos.windows import split_windows

    rate = 44100
    rng = np.random.default_rng(0)
    t = np.arange(25 * rate) / rate
    x = (0.3 * np.sin(2 * np.pi * 700 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([x, 0.5 * x], axis=1), rate, subtype="PCM_24")
    whole = read_audio(path, RATE)
    windows = list(iter_audio_windows(path, RATE, 10.0))
    assert [len(w) for w in windows] == [160000, 160000, 80000]
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in windows)
    for got, want in zip(windows, split_windows(whole, 160000), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# Rates and windows whose source blocks do not fall on output window boundaries (0.37 s of
# 22.05 kHz is 8158.5 source samples), and one without resampling.
@pytest.mark.parametrize("source,target,seconds", [(22050, 16000, 0.37), (48000, 16000, 1.0003), (11025, 16000, 0.5),
                                                   (8000, 16000, 0.25), (44100, 48000, 0.7), (16000, 16000, 0.3)])
def test_windows_are_the_whole_file_cut_alike(tmp_path: Path, source: int, target: int, seconds: float) -> None:
    """Windows of any length at any rate: as many, as long, and the same samples (1e-5) as the
    whole file resampled in one go and cut by split_windows, as training cuts it."""
    from mos.windows import split_windows

    rng = np.random.default_rng(source + target)
    x = (0.3 * rng.standard_normal((int(3.3 * source), 2))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, x, source, subtype="FLOAT")
    window = int(round(seconds * target))  # as the engine and the trainer round
    want = split_windows(read_audio(path, target), window)
    got = list(iter_audio_windows(path, target, seconds))
    assert [len(w) for w in got] == [len(w) for w in want] and len(got) > 3
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_streamed_resampler_in_any_blocks_equals_one_shot() -> None:
    """The stream, fed blocks of any size (empty and single samples too), gives the one-shot
    samples: the output of each call is what the input so far fully determines."""
    from mos.audio import Resampler, resample_poly

    rng = np.random.default_rng(1)
    for source, target in ((44100, 16000), (16000, 48000), (24000, 44100), (16000, 16000)):
        x = (0.3 * rng.standard_normal(50000)).astype(np.float32)
        whole = resample_poly(x, target, source)
        stream = Resampler(source, target)
        cuts = np.sort(rng.integers(0, len(x), 40))
        cuts = np.sort(np.concatenate([[0], cuts, cuts[:3], [1, len(x) - 1, len(x)]]))  # repeats: empty blocks
        parts = [stream.process(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:])] + [stream.process(x[:0], last=True)]
        got = np.concatenate(parts)
        assert got.dtype == np.float32 and got.shape == whole.shape
        np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("source,target,freq", [(44100, 16000, 1000.0), (16000, 48000, 3000.0), (24000, 44100, 440.0)])
def test_a_resampled_sine_stays_the_sine(source: int, target: int, freq: float) -> None:
    """Quality: a tone well inside both bands comes out as the same tone at the new rate."""
    from mos.audio import resample_poly

    y = resample_poly(sine(freq, source, 2.0), target, source)
    want = sine(freq, target, 2.0)
    assert len(y) == len(want)
    inner = slice(target // 10, -target // 10)  # away from the zero padding at the ends
    np.testing.assert_allclose(y[inner], want[inner], rtol=0, atol=2e-3)


@pytest.mark.slow
def test_long_file_windows_hold_one_window_in_memory(tmp_path: Path) -> None:
    """Reading a 44.1 kHz file in 1 s windows holds about a window, not the file: the peak
    does not grow from a 20 s file to a 120 s one and stays far below the 120 s file whole."""
    import tracemalloc

    peaks = []
    for seconds in (20, 120):
        path = tmp_path / f"long{seconds}.wav"
        x = 0.1 * np.random.default_rng(seconds).standard_normal(seconds * 44100)
        sf.write(path, x.astype(np.float32), 44100, subtype="PCM_16")
        tracemalloc.start()
        try:
            n = sum(len(w) for w in iter_audio_windows(path, RATE, 1.0))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert n == seconds * RATE
    assert peaks[1] < 1.5 * peaks[0], peaks
    assert peaks[1] < 120 * RATE * 4 / 4, peaks


def test_window_of_short_file_equals_read_audio(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, np.stack([sine(440.0, 48000, 3.0), sine(660.0, 48000, 3.0)], axis=1), 48000)
    windows = list(iter_audio_windows(path, RATE, 10.0))
    assert len(windows) == 1
    np.testing.assert_array_equal(windows[0], read_audio(path, RATE))


def test_audio_duration_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "d.flac"
    sf.write(path, sine(440.0, 8000, 2.5), 8000, format="FLAC")
    assert audio_duration(path) == pytest.approx(2.5)


def test_cut_off_wav_is_refused_by_both_read_paths(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32) + 0.1, 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy cut off half-way: the header still declares 1 s
    with pytest.raises(AudioError, match="truncated WAV"):
        read_audio(path, 16000)
    with pytest.raises(AudioError, match="truncated WAV"):
        list(iter_audio_windows(path, 16000, 10.0))


def test_the_command_line_starts_without_scipy_signal_or_the_benchmark() -> None:
    """`mos score` as a per-file hook: neither start-up nor resampling a 44.1 kHz file imports
    scipy.signal (a second of start-up), nor the benchmark (loaded by `mos bench`), nor torch."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, mos.cli, mos.runtime.command\n"
            "from mos.audio import prepare_block\n"
            "y = prepare_block(np.ones((4410, 1), np.float32), 44100, 16000, 'x.wav')\n"
            "print(len(y), sorted(m for m in ('scipy.signal', 'mos.bench.run', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "1600 []"


@pytest.mark.parametrize("source,target", [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000),
                                           (16000, 48000), (32000, 16000), (44100, 48000), (11025, 16000)])
def test_resampler_gives_scipy_resample_polys_samples(source: int, target: int) -> None:
    """The numpy polyphase resampler is scipy.signal.resample_poly (Kaiser 5.0) sample for sample,
    on clips shorter than its filter and on long ones (measured: identical in float32)."""
    import math

    from scipy.signal import resample_poly as scipy_resample_poly

    from mos.audio import resample_poly

    rng = np.random.default_rng(source + target)
    g = math.gcd(source, target)
    for n in (1, 7, 1001, 123457):
        x = (rng.standard_normal(n) * 0.3).astype(np.float32)
        ours = resample_poly(x, target, source)
        ref = scipy_resample_poly(x, target // g, source // g)
        assert ours.dtype == ref.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
