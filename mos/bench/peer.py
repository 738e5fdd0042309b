"""The peers: DNSMOS as the `speechmos` package ships it (ONNX Runtime, audio-only, 16 kHz), and
optionally another audio-only bundle (`--peer-bundle`, e.g. `mos export --pretrained distillmos`),
each timed on the same clips one at a time, decode and resample included as for our engine."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mos.audio import read_audio
from mos.bench.stats import percentile, spread
from mos.bundle import Bundle
from mos.errors import MosError

DNSMOS_RATE = 16000


def peer_missing() -> str | None:
    """None when DNSMOS can run here, else why not (speechmos imports librosa and requests
    without declaring them as dependencies)."""
    for module, hint in (("speechmos", "pip install speechmos"), ("librosa", "speechmos needs librosa: pip install librosa"),
                         ("requests", "speechmos needs requests: pip install requests")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({hint})"
    return None


def run_dnsmos(files: Sequence[Path]) -> dict[str, Any]:
    """Per-clip seconds (decode + 16 kHz resample + DNSMOS) on `files`; the first call (librosa's
    numba JIT, tens of seconds) runs on a separate warm-up clip and is excluded."""
    from speechmos import dnsmos

    warm = np.zeros(DNSMOS_RATE, dtype=np.float32)
    t = time.perf_counter()
    dnsmos.run(warm, DNSMOS_RATE)
    warm_up = time.perf_counter() - t
    per_clip, scores, audio_seconds, total = _timed_scores(
        files, DNSMOS_RATE, lambda x: float(dnsmos.run(np.clip(x, -1.0, 1.0), DNSMOS_RATE)["ovrl_mos"]))
    try:
        version = metadata.version("speechmos")
    except metadata.PackageNotFoundError:
        version = "?"
    return {"name": f"DNSMOS P.835 (speechmos {version}, ONNX Runtime, default threads)",
            **_timings(per_clip, audio_seconds, total), "warm_up_seconds": round(warm_up, 1),
            "ovrl_mean": round(float(np.mean(scores)), 3) if scores else None}


def _timed_scores(files: Sequence[Path], rate: int, score: Callable[[np.ndarray], float]
                  ) -> tuple[list[float], list[float], float, float]:
    """Decode each file at `rate` and score it, one clip at a time: per-clip seconds (decode
    included), the scores, the seconds of audio, and the whole loop's seconds."""
    per_clip: list[float] = []
    scores: list[float] = []
    audio_seconds = 0.0
    start = time.perf_counter()
    for f in files:
        t = time.perf_counter()
        x = read_audio(f, rate)
        scores.append(score(x))
        per_clip.append(time.perf_counter() - t)
        audio_seconds += x.shape[0] / rate
    return per_clip, scores, audio_seconds, time.perf_counter() - start


def _timings(per_clip: list[float], audio_seconds: float, total: float) -> dict[str, Any]:
    """Clips/s, real-time factor, per-clip milliseconds (median, min-max) and p95 of a peer's run."""
    return {
        "clips": len(per_clip),
        "clips_per_s": round(len(per_clip) / total, 3) if total > 0 else None,
        "rtf": round(audio_seconds / total, 1) if total > 0 else None,
        "ms_per_clip": spread([1000 * s for s in per_clip], 1),
        "p95_ms": round(1000 * percentile(per_clip, 95), 1) if per_clip else None,
    }


def check_peer_bundle(bundle: Bundle) -> None:
    """A peer bundle must be audio-only (the workload's captions belong to the measured bundle)."""
    if bundle.uses_text:
        raise MosError(f"--peer-bundle {bundle.root}: reads captions; a peer bundle must be audio-only "
                       "(e.g. mos export --pretrained distillmos)")


def run_bundle_peer(bundle: Bundle, files: Sequence[Path], device: str, threads: int) -> dict[str, Any]:
    """Per-clip seconds (decode + resample + the bundle's audio model, one clip at a time, the way
    run_dnsmos times DNSMOS) of an audio-only bundle on `files`, and its first target's mean score."""
    from mos.runtime.engine import EngineOptions, ScoreEngine

    check_peer_bundle(bundle)
    engine = ScoreEngine(bundle, EngineOptions(device=device, threads=threads, batch_size=1))
    engine.score_arrays([np.zeros(engine.sample_rate, dtype=np.float32)], [None])  # warm-up, excluded
    per_clip, scores, audio_seconds, total = _timed_scores(
        files, engine.sample_rate, lambda x: float(engine.score_arrays([x], [None])[0, 0]))
    encoder = (bundle.meta["audio"].get("encoder") or {}).get("name") or bundle.root.name
    return {"name": f"{encoder} (bundle {bundle.root.name}, ONNX Runtime, {engine.threads} threads)",
            **_timings(per_clip, audio_seconds, total), "target": bundle.target_names[0],
            "score_mean": round(float(np.mean(scores)), 3) if scores else None}
