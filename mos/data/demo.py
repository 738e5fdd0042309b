"""A built-in demo set in the XACLE layout: synthetic clips, deterministic, with honest learnable targets."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf
from scipy import signal

GENERATOR_VERSION = 2  # 2: listener ids in meta_data/{split}.csv (ratings and audio as in 1)
DATASET_DIR = "XACLE_dataset"
MARKER = ".complete"

# Target model: alignment = FLOOR + (CEIL - FLOOR) * presence of the named sound.
ALIGN_FLOOR = 1.5
ALIGN_CEIL = 9.0
QUALITY_CLEAN = 9.2
LISTENER_SD = 0.8
LISTENER_POOL = 12  # simulated listeners; each clip's are drawn from them without repeats

Synth = Callable[[np.random.Generator, int, int], np.ndarray]


@dataclass(frozen=True)
class DemoConfig:
    """Size and seed of the demo set; the marker file records it, so a change rebuilds the set."""

    n_train: int = 320
    n_validation: int = 96
    seconds: float = 2.0
    sample_rate: int = 16000
    seed: int = 0
    listeners: int = 4


# ----------------------------------------------------------------------------- synthesis helpers


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sr


def _gate(rng: np.random.Generator, n: int, sr: int, fade: float = 0.03) -> np.ndarray:
    """An on/off envelope: the sound starts at a random offset (and may stop early), with short fades."""
    start = int(rng.uniform(0.0, 0.25) * n)
    stop = n - int(rng.uniform(0.0, 0.15) * n)
    env = np.zeros(n)
    env[start:stop] = 1.0
    k = max(1, int(fade * sr))
    ramp = np.linspace(0.0, 1.0, k)
    env[start : start + k] *= ramp[: min(k, stop - start)]
    env[max(start, stop - k) : stop] *= ramp[::-1][-(stop - max(start, stop - k)) :]
    return env


def _place(out: np.ndarray, at: int, burst: np.ndarray) -> None:
    """Add `burst` into `out` starting at sample `at`, cropped to fit."""
    if at >= len(out):
        return
    m = min(len(burst), len(out) - at)
    out[at : at + m] += burst[:m]


def _bell(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    f0 = rng.uniform(350.0, 1100.0)
    ratios = np.array([1.0, 2.0, 2.76, 4.07, 5.40])
    amps = np.array([1.0, 0.6, 0.5, 0.3, 0.2])
    taus = rng.uniform(0.35, 1.0) / np.sqrt(ratios)
    keep = f0 * ratios < 0.45 * sr
    strikes = rng.integers(2, 5)
    start = rng.uniform(0.0, 0.2) * n / sr
    gap = rng.uniform(0.25, 0.6)
    out = np.zeros(n)
    length = int(min(3.0 * taus.max(), n / sr) * sr)
    tl = _t(length, sr)
    partials = (amps[keep, None] * np.exp(-tl[None, :] / taus[keep, None])
                * np.sin(2 * np.pi * f0 * ratios[keep, None] * tl[None, :])).sum(axis=0)
    for s in range(int(strikes)):
        _place(out, int((start + s * gap) * sr), partials * rng.uniform(0.7, 1.0))
    return out


def _siren(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = _t(n, sr)
    centre = rng.uniform(900.0, 1100.0)
    depth = rng.uniform(250.0, 350.0)
    rate = rng.uniform(0.4, 1.2)
    freq = centre + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase)) * _gate(rng, n, sr)


def _rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    sos = signal.butter(2, [300.0, min(7000.0, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    bed = signal.sosfilt(sos, rng.standard_normal(n))
    t = _t(n, sr)
    bed *= 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t)
    rate = rng.uniform(20.0, 60.0)
    drops = np.zeros(n)
    idx = rng.integers(0, n, size=rng.poisson(rate * n / sr))
    drops[idx] = rng.uniform(2.0, 8.0, size=len(idx)) * rng.choice([-1.0, 1.0], size=len(idx))
    k = int(0.004 * sr)
    click = np.exp(-_t(k, sr) / 0.0008) * rng.standard_normal(k)
    drops = np.convolve(drops, click)[:n]
    return (0.5 * bed / (np.std(bed) + 1e-9) + drops) * _gate(rng, n, sr, fade=0.1)


# One period of a buzzy waveform: 24 harmonics at 1/k^0.8 (band-limited for f0 up to 120 Hz at 16 kHz).
_ENGINE_WAVE = (np.sin(np.arange(1, 25)[:, None] * 2 * np.pi * np.arange(4096)[None, :] / 4096)
                / np.arange(1, 25)[:, None] ** 0.8).sum(axis=0)


def _engine(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = _t(n, sr)
    f0 = rng.uniform(40.0, 120.0) * (1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
    cycles = np.cumsum(f0) / sr
    harm = _ENGINE_WAVE[(cycles * len(_ENGINE_WAVE)).astype(np.int64) % len(_ENGINE_WAVE)]
    am = 1.0 + rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * rng.uniform(4.0, 12.0) * t)
    sos = signal.butter(2, 300.0, btype="lowpass", fs=sr, output="sos")
    rumble = signal.sosfilt(sos, rng.standard_normal(n))
    return (harm * am + 2.0 * rumble) * _gate(rng, n, sr, fade=0.1)


def _bird(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    rate = rng.uniform(3.0, 8.0)
    top = 0.45 * sr
    f_lo, f_hi = rng.uniform(2000.0, 3000.0), rng.uniform(min(4000.0, 0.8 * top), min(6000.0, top))
    pos = rng.uniform(0.0, 0.25) * n / sr
    while pos < n / sr:
        d = rng.uniform(0.04, 0.12)
        tl = _t(int(d * sr), sr)
        a, b = f_lo * rng.uniform(0.9, 1.1), f_hi * rng.uniform(0.9, 1.0)
        chirp = np.sin(2 * np.pi * (a * tl + (b - a) * tl**2 / (2 * d))) * np.hanning(len(tl))
        _place(out, int(pos * sr), chirp * rng.uniform(0.5, 1.0))
        pos += d + rng.exponential(1.0 / rate)
    return out


def _drum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    period = 60.0 / rng.uniform(80.0, 160.0)
    decay = rng.uniform(0.08, 0.2)
    f_hi, f_lo = rng.uniform(100.0, 160.0), rng.uniform(45.0, 70.0)
    tl = _t(int(4 * decay * sr), sr)
    freq = f_lo + (f_hi - f_lo) * np.exp(-tl / 0.03)
    thump = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-tl / decay)
    thump[: int(0.003 * sr)] += 0.3 * rng.standard_normal(int(0.003 * sr))
    pos = rng.uniform(0.0, 0.25) * n / sr
    while pos < n / sr:
        _place(out, int(pos * sr), thump * rng.uniform(0.8, 1.0))
        pos += period
    return out


def _whistle(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = _t(n, sr)
    freq = rng.uniform(2000.0, 3000.0) + rng.uniform(15.0, 60.0) * np.sin(2 * np.pi * rng.uniform(4.0, 7.0) * t)
    tone = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    sos = signal.butter(2, [1500.0, min(3500.0, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    breath = signal.sosfilt(sos, rng.standard_normal(n))
    return (tone + 0.05 * breath / (np.std(breath) + 1e-9)) * _gate(rng, n, sr, fade=0.05)


def _babble(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = _t(n, sr)
    out = np.zeros(n)
    for _ in range(2):  # two overlapping talkers
        f0 = rng.uniform(100.0, 220.0) * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))
        cycles = np.floor(np.cumsum(f0) / sr)
        pulses = np.diff(cycles, prepend=0.0)
        src = signal.lfilter([1.0], [1.0, -0.95], pulses)  # glottal spectral tilt
        voice = np.zeros(n)
        formants = ((rng.uniform(450, 800), 80.0), (rng.uniform(1000, 1900), 120.0), (rng.uniform(2300, 2900), 180.0))
        for fc, bw in formants:
            r = math.exp(-math.pi * bw / sr)
            w = 2 * math.pi * fc / sr
            voice += signal.lfilter([1.0 - r], [1.0, -2 * r * math.cos(w), r * r], src)
        syll = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t + rng.uniform(0, 2 * np.pi))) ** 1.5
        out += voice / (np.std(voice) + 1e-9) * syll * rng.uniform(0.6, 1.0)
    return out * _gate(rng, n, sr, fade=0.05)


CLASSES: dict[str, Synth] = {
    "bell": _bell,
    "siren": _siren,
    "rain": _rain,
    "engine": _engine,
    "bird": _bird,
    "drum": _drum,
    "whistle": _whistle,
    "speech": _babble,
}
CLASS_NAMES: list[str] = list(CLASSES)

CAPTIONS: dict[str, list[str]] = {
    "bell": [
        "A bell rings several times in a quiet room",
        "A metal bell is struck and its tone slowly fades away",
        "Someone strikes a small bell a few times in a row",
        "The clear ringing of a church bell echoes and decays",
    ],
    "siren": [
        "A siren wails up and down as an emergency vehicle approaches",
        "An ambulance siren rises and falls in pitch over and over",
        "A loud police siren sweeps between a low and high tone",
        "The warning siren keeps wailing in the distance without stopping",
    ],
    "rain": [
        "Heavy rain falls steadily with drops hitting the ground",
        "Rain pours down outside and patters on a tin roof",
        "Raindrops splash continuously during a steady downpour outdoors",
        "Steady rainfall hisses while individual drops tap on a window",
    ],
    "engine": [
        "A car engine idles with a low rumbling hum",
        "A truck engine runs at a steady low rumble nearby",
        "The low droning of a motor engine idling in a garage",
        "A diesel engine rumbles and throbs while the vehicle waits",
    ],
    "bird": [
        "A small bird chirps quickly in high pitched bursts",
        "Birds are chirping and tweeting outside in the morning",
        "Several high pitched bird chirps repeat rapidly in a garden",
        "A songbird sings short rising chirps from a nearby tree",
    ],
    "drum": [
        "Someone beats a bass drum at a steady tempo",
        "A drum is hit repeatedly with low booming thumps",
        "Deep drum beats pound out a regular rhythm in a hall",
        "A person plays a steady beat on a large low drum",
    ],
    "whistle": [
        "A person whistles a single long steady high note",
        "A high pitched whistle blows with a slight wavering tone",
        "Someone produces a clear steady whistle that wavers slightly",
        "A referee blows a long shrill whistle on the field",
    ],
    "speech": [
        "People are talking at the same time in a room",
        "A man and a woman speak to each other quietly",
        "Several people chatter and talk over each other indoors",
        "Two people hold a conversation with indistinct voices nearby",
    ],
}

# Share of clips whose audio is the named sound (match), a mix of it with another (mix), or another (mismatch).
CONDITIONS: tuple[tuple[str, float], ...] = (("match", 0.55), ("mix", 0.15), ("mismatch", 0.30))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def _energy_db(x: np.ndarray) -> float:
    return 10.0 * math.log10(float(np.mean(x**2)) + 1e-20)


def noise_penalty(snr_db: float | None) -> float:
    """Quality lost to additive noise: ~5.5 at 0 dB SNR, 3 at 12 dB, ~0 above 35 dB."""
    return 0.0 if snr_db is None else 6.0 / (1.0 + math.exp((snr_db - 12.0) / 5.0))


def clip_penalty(clip_level: float | None) -> float:
    """Quality lost to hard clipping at `clip_level` x the peak: ~3 at 0.05, ~0.3 at 0.7."""
    return 0.0 if clip_level is None else 3.5 * (1.0 - clip_level) ** 2


def lowpass_penalty(cutoff_hz: float | None) -> float:
    """Quality lost to band-limiting: 3.5 at 1 kHz, ~1.2 at 4 kHz (relative to an 8 kHz full band)."""
    return 0.0 if cutoff_hz is None else 3.5 * math.log(8000.0 / cutoff_hz) / math.log(8.0)


def noise_audibility(snr_db: float | None) -> float:
    """How much of the named sound survives masking noise: 0.55 at 0 dB, 0.9 at 5 dB, ~1 above 10 dB."""
    return 1.0 if snr_db is None else 1.0 - 0.45 * math.exp(-snr_db / 3.0)


def band_audibility(retained_db: float) -> float:
    """How much of the named sound survives the low-pass: 1 down to 6 dB of its energy lost, 0 at 30 dB lost."""
    return min(1.0, max(0.0, 1.0 - (-retained_db - 6.0) / 24.0))


def _clip(rng: np.random.Generator, caption_class: int, n: int, sr: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Synthesise one clip for a caption class; return the audio and its generating parameters and true scores."""
    u = rng.uniform()
    condition = "match" if u < CONDITIONS[0][1] else "mix" if u < CONDITIONS[0][1] + CONDITIONS[1][1] else "mismatch"
    other = (caption_class + int(rng.integers(1, len(CLASS_NAMES)))) % len(CLASS_NAMES)
    named = np.zeros(n) if condition == "mismatch" else _unit(CLASSES[CLASS_NAMES[caption_class]](rng, n, sr))
    secondary: int | None = None
    named_level_db: float | None = None
    if condition == "match":
        audio_class, clean, named_part = caption_class, named, named
    elif condition == "mismatch":
        audio_class = other
        clean = _unit(CLASSES[CLASS_NAMES[other]](rng, n, sr))
        named_part = np.zeros(n)
    else:
        audio_class, secondary = caption_class, other
        named_level_db = float(rng.uniform(-6.0, 6.0))  # named sound relative to the other one
        g = 10.0 ** (named_level_db / 20.0)
        rest = _unit(CLASSES[CLASS_NAMES[other]](rng, n, sr))
        clean = _unit(g * named + rest)
        named_part = g * named / (np.sqrt(np.mean((g * named + rest) ** 2)) + 1e-12)

    # Degradations, drawn independently of the caption and of each other.
    x = clean.copy()
    snr_db: float | None = None
    noise_kind: str | None = None
    if rng.uniform() < 0.8:
        snr_db = float(rng.uniform(0.0, 40.0))
        noise_kind = "pink" if rng.uniform() < 0.5 else "white"
        noise = _unit(_pink(rng, n) if noise_kind == "pink" else rng.standard_normal(n))
        x = x + noise * 10.0 ** (-snr_db / 20.0)
    lowpass_hz: float | None = None
    retained_db = 0.0
    if rng.uniform() < 0.3:
        lowpass_hz = float(rng.uniform(1000.0, min(4000.0, 0.45 * sr)))
        sos = signal.butter(6, lowpass_hz, btype="lowpass", fs=sr, output="sos")
        x = signal.sosfilt(sos, x)
        if condition != "mismatch":
            retained_db = _energy_db(signal.sosfilt(sos, named_part)) - _energy_db(named_part)
    clip_level: float | None = None
    peak = float(np.max(np.abs(x))) + 1e-12
    if rng.uniform() < 0.3:
        clip_level = float(rng.uniform(0.05, 0.7))
        x = np.clip(x, -clip_level * peak, clip_level * peak)
        peak = clip_level * peak
    level_dbfs = float(rng.uniform(-24.0, -1.0))
    x = x / peak * 10.0 ** (level_dbfs / 20.0)

    presence = {"match": 1.0, "mismatch": 0.0}.get(condition, 0.35 + 0.3 * ((named_level_db or 0.0) + 6.0) / 12.0)
    presence *= noise_audibility(snr_db) * band_audibility(retained_db)
    alignment = ALIGN_FLOOR + (ALIGN_CEIL - ALIGN_FLOOR) * presence
    quality = QUALITY_CLEAN - noise_penalty(snr_db) - clip_penalty(clip_level) - lowpass_penalty(lowpass_hz)
    params: dict[str, Any] = {
        "caption_class": CLASS_NAMES[caption_class],
        "audio_class": CLASS_NAMES[audio_class],
        "secondary_class": CLASS_NAMES[secondary] if secondary is not None else None,
        "condition": condition,
        "match": condition == "match",
        "named_level_db": None if named_level_db is None else round(named_level_db, 3),
        "snr_db": None if snr_db is None else round(snr_db, 3),
        "noise": noise_kind,
        "clip_level": None if clip_level is None else round(clip_level, 4),
        "lowpass_hz": None if lowpass_hz is None else round(lowpass_hz, 1),
        "named_retained_db": round(retained_db, 3),
        "level_dbfs": round(level_dbfs, 3),
        "true_alignment": round(min(10.0, max(0.0, alignment)), 4),
        "true_quality": round(min(10.0, max(0.5, quality)), 4),
    }
    return x, params


def _ratings(rng: np.random.Generator, true: float, listeners: int) -> list[float]:
    """Listener ratings: the true value plus N(0, 0.8), clipped to 0..10 and rounded to 0.5 steps."""
    raw = true + rng.normal(0.0, LISTENER_SD, size=listeners)
    return [float(v) for v in np.round(np.clip(raw, 0.0, 10.0) * 2.0) / 2.0]


def _listener_ids(seed: int, index: int, listeners: int) -> list[str]:
    """The ids of clip `index`'s listeners, drawn without repeats from the pool with their own rng
    stream (so the ratings, averages and audio do not depend on them)."""
    pool = max(LISTENER_POOL, listeners)
    chosen = np.random.default_rng([seed, index, 2]).choice(pool, size=listeners, replace=False)
    return [f"L{int(k) + 1:02d}" for k in chosen]


def _write_split(out: Path, split: str, first: int, count: int, config: DemoConfig) -> None:
    n = int(round(config.seconds * config.sample_rate))
    sr = config.sample_rate
    wav_dir = out / "wav" / split
    wav_dir.mkdir(parents=True)
    # Balanced caption classes: each class named equally often (up to one), in a seeded order.
    order = np.resize(np.arange(len(CLASS_NAMES)), count)
    np.random.default_rng([config.seed, 7919, first]).shuffle(order)
    avg_rows: list[list[str]] = []
    listener_rows: list[list[str]] = []
    param_lines: list[str] = []
    for k in range(count):
        index = first + k
        name = f"{index:05d}.wav"
        rng = np.random.default_rng([config.seed, index])
        caption_class = int(order[k])
        x, params = _clip(rng, caption_class, n, sr)
        sf.write(wav_dir / name, np.clip(x, -1.0, 32767.0 / 32768.0), sr, subtype="PCM_16", format="WAV")
        templates = CAPTIONS[CLASS_NAMES[caption_class]]
        text = templates[int(rng.integers(0, len(templates)))]
        lrng = np.random.default_rng([config.seed, index, 1])
        align = _ratings(lrng, params["true_alignment"], config.listeners)
        qual = _ratings(lrng, params["true_quality"], config.listeners)
        average = round(sum(align) / len(align), 2)
        quality = round(sum(qual) / len(qual), 2)
        avg_rows.append([name, text, f"{average:.2f}", f"{quality:.2f}"])
        who = _listener_ids(config.seed, index, config.listeners)
        listener_rows.extend([name, text, f"{s:.1f}", lid] for s, lid in zip(align, who))
        param_lines.append(json.dumps({"wav_file_name": name, "text": text, **params,
                                       "average_score": average, "quality_score": quality}, sort_keys=True))
    meta = out / "meta_data"
    meta.mkdir(exist_ok=True)
    for fname, header, rows in (
        (f"{split}_average.csv", ["wav_file_name", "text", "average_score", "quality_score"], avg_rows),
        (f"{split}.csv", ["wav_file_name", "text", "score", "listener"], listener_rows),
    ):
        with open(meta / fname, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    (meta / f"{split}_params.jsonl").write_text("\n".join(param_lines) + "\n", encoding="utf-8")


def _marker(config: DemoConfig) -> str:
    return json.dumps({"config": asdict(config), "generator_version": GENERATOR_VERSION}, sort_keys=True)


def _readme(config: DemoConfig) -> str:
    probs = ", ".join(f"{c} {p:.0%}" for c, p in CONDITIONS)
    return f"""# Demo set (synthetic, XACLE layout)

This folder is generated by `mos.data.demo.build_demo` (generator version {GENERATOR_VERSION}) so that
`mos train` works without downloading anything. It is **not** real data: every clip is synthesised
procedurally and every rating is computed from the parameters that generated the clip, plus simulated
listener noise. Use it to check that the pipeline trains and scores end to end, not to judge a model.

Config: {config.n_train} train + {config.n_validation} validation clips, {config.seconds} s at
{config.sample_rate} Hz, seed {config.seed}, {config.listeners} listeners per clip. Same config, same bytes.

## How a clip is made
1. A caption class is picked (classes are balanced): {", ".join(CLASS_NAMES)}; the caption is one of
   several natural-language templates naming it.
2. The audio is the named sound ({probs.split(", ")[0]}), the named sound mixed with another class at
   -6..+6 dB ({probs.split(", ")[1]}), or a different class ({probs.split(", ")[2]}). Pitch, tempo, level
   and start offset are random per clip.
3. Independent degradations: white or pink noise at SNR 0..40 dB (80% of clips), 6th-order Butterworth
   low-pass at 1-4 kHz (30%), hard clipping at 5-70% of the peak (30%), and a random level (-24..-1 dBFS peak).

## Targets (0-10)
- `average_score` (text-audio alignment, the XACLE target): {ALIGN_FLOOR} + {ALIGN_CEIL - ALIGN_FLOOR} x presence,
  where presence is 1 for a match, 0 for a mismatch and 0.35-0.65 for a mix (by the named sound's level),
  times how audible the named sound stays under noise (SNR below ~5 dB masks it) and the low-pass
  (energy of the named sound removed by the filter beyond 6 dB, gone at 30 dB: e.g. bird chirps or a
  whistle under a 2 kHz cutoff).
- `quality_score` (audio quality): {QUALITY_CLEAN} minus smooth penalties for noise (a function of SNR),
  clipping severity and band-limit cutoff; independent of the caption.
- Each of the {config.listeners} listeners rates true value + N(0, {LISTENER_SD}), clipped to 0-10, rounded to 0.5.
  `meta_data/{{split}}.csv` holds the individual alignment ratings; the averages are their means.
  Each clip's listeners are drawn from a pool of {max(LISTENER_POOL, config.listeners)} simulated listeners (ids `L01`...); the
  ids are labels only: every listener rates the same way (no listener bias is simulated).

## Files
- `wav/{{train,validation}}/NNNNN.wav`: 16-bit PCM mono; ids are unique across splits.
- `meta_data/{{split}}_average.csv`: `wav_file_name,text,average_score,quality_score`.
- `meta_data/{{split}}.csv`: `wav_file_name,text,score,listener`, one row per listener.
- `meta_data/{{split}}_params.jsonl`: the generating parameters and true scores of each clip.
- `.complete`: the config and generator version; written last, so a partial build is never reused.
"""


def build_demo(root: Path, config: DemoConfig = DemoConfig()) -> Path:
    """Write the demo set to `root/XACLE_dataset` (unless a complete one for `config` is there) and return it."""
    if config.sample_rate < 8000 or config.seconds <= 0 or config.listeners < 1:
        raise ValueError(f"demo set needs sample_rate >= 8000, seconds > 0 and listeners >= 1, got {config}")
    if config.n_train < 1 or config.n_validation < 1:
        raise ValueError(f"demo set needs at least one clip per split, got {config}")
    root = Path(root)
    target = root / DATASET_DIR
    marker = _marker(config)
    try:
        if (target / MARKER).read_text(encoding="utf-8") == marker:
            return target
    except OSError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DATASET_DIR}.", suffix=".tmp", dir=root))
    tmp.chmod(0o755)
    try:
        _write_split(tmp, "train", 0, config.n_train, config)
        _write_split(tmp, "validation", config.n_train, config.n_validation, config)
        (tmp / "DEMO.md").write_text(_readme(config), encoding="utf-8")
        (tmp / MARKER).write_text(marker, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# The pool's seeds start here: never the rated set's (seed 0 by default), so no pool clip repeats one.
POOL_SEED_OFFSET = 1000


def build_demo_pool(root: Path, clips: int, config: DemoConfig = DemoConfig()) -> Path:
    """`clips` unrated clips made by the demo set's generator with another seed (the same kinds of
    sound, captions and degradations, none of the rated clips), for `mos distill --demo-pool`:
    the folder of wav files under `root/pool-<clips>/` (made once, reused)."""
    if clips < 1:
        raise ValueError(f"a demo pool needs at least one clip, got {clips}")
    pool = DemoConfig(n_train=clips, n_validation=1, seconds=config.seconds, sample_rate=config.sample_rate,
                      seed=config.seed + POOL_SEED_OFFSET, listeners=config.listeners)
    return build_demo(Path(root) / f"pool-{clips}", pool) / "wav" / "train"
