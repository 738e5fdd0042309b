"""Where the time of one clip goes: decode, mixdown+resample, text, the audio model (split by
graph module from ONNX Runtime's own profiler: front end, encoder, fusion, heads) and writing.
Each stage is timed alone, one after another, on the same clips."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mos.errors import one_line
from mos.audio import prepare_block
from mos.bundle import Bundle
from mos.runtime.batching import pad_waveforms, plan_batches
from mos.runtime.engine import EngineOptions, ScoreEngine
from mos.runtime.batching import pad_token_features
from mos.runtime.writers import Row, RowWriter

# Top-level modules of MosModel as the TorchScript exporter names nodes (/frontend/..., ...).
MODULE_NAMES = {
    "frontend": "front end (DFT conv, mel, log)",
    "audio_encoder": "audio encoder (conv blocks)",
    "fusion": "fusion (cross-attention / pooling)",
}


def _ms_per_clip(seconds: float, clips: int) -> float:
    return round(1000.0 * seconds / max(1, clips), 3)


def module_of(node_name: str) -> str:
    """'/frontend/conv/Conv' -> 'frontend'; a node without a module path -> 'other'."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) >= 2:
        top = parts[0].split(".")[0]
        return top
    return "other"


def ort_module_split(model_path: Path, feeds: Sequence[dict[str, np.ndarray]], threads: int,
                     passes: int = 2) -> dict[str, float]:
    """Fraction of ORT kernel time per top-level module, from ORT's profiler over `passes`
    passes of `feeds` (after one unprofiled warm-up pass in the same session)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="mos-ortprof-") as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        for _ in range(1 + passes):
            for f in feeds:
                sess.run(names, f)
        prof = sess.end_profiling()
        events = json.loads(Path(prof).read_text())
    # Skip the warm-up pass: its events come first; keep the last `passes * len(feeds)` runs.
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = runs[len(feeds)]["ts"] if len(runs) > len(feeds) else 0
    per: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or e.get("ts", 0) < start:
            continue
        name = str(e.get("name", ""))
        if not name.endswith("_kernel_time"):
            continue
        per[module_of(name[: -len("_kernel_time")])] += float(e.get("dur", 0))
    total = sum(per.values()) or 1.0
    return {k: v / total for k, v in sorted(per.items(), key=lambda kv: -kv[1])}


def stage_profile(bundle: Bundle, files: Sequence[Path], captions: Sequence[str | None], threads: int,
                  batch_size: int, int8: bool = False) -> dict[str, Any]:
    """Milliseconds per clip of each stage on `files`, measured alone and in sequence."""
    sr = bundle.sample_rate
    n = len(files)
    out: dict[str, Any] = {"clips": n, "threads": threads, "batch_size": batch_size,
                           "variant": "int8" if int8 else "fp32", "ms_per_clip": {}}
    ms = out["ms_per_clip"]

    for f in files[: min(4, n)]:  # warm the page cache and soundfile
        sf.read(f, dtype="float32", always_2d=True)
    blocks = []
    t = time.perf_counter()
    for f in files:
        blocks.append(sf.read(f, dtype="float32", always_2d=True))
    ms["decode"] = _ms_per_clip(time.perf_counter() - t, n)
    t = time.perf_counter()
    waves = [prepare_block(data, int(rate), sr, f) for (data, rate), f in zip(blocks, files)]
    ms["mixdown + resample"] = _ms_per_clip(time.perf_counter() - t, n)
    rates = sorted({int(rate) for _, rate in blocks})
    out["source_rates"] = rates
    out["source_channels"] = sorted({int(d.shape[1]) for d, _ in blocks})
    del blocks

    engine = ScoreEngine(bundle, EngineOptions(device="cpu", threads=threads, int8=int8, batch_size=batch_size))
    window = engine.window_samples
    waves = [w[:window] for w in waves]  # the profile looks at one window per clip
    feats = None
    if engine.text is not None:
        caps = [c or "" for c in captions]
        engine.text.encode(caps[:1])  # warm-up on one caption (its cost is then excluded)
        t = time.perf_counter()
        feats = engine.text.encode(caps)
        ms["text (tokenize + text.onnx)"] = _ms_per_clip(time.perf_counter() - t, n)

    batches = plan_batches([w.shape[0] for w in waves], batch_size, not bundle.padding_invariant)
    feeds = []
    for idx in batches:
        wave, lengths = pad_waveforms([waves[i] for i in idx])
        feed = {"waveform": wave, "lengths": lengths}
        if feats is not None:
            feed["text"], feed["text_lengths"] = pad_token_features([feats[i] for i in idx])
        feeds.append(feed)
    runner = engine.audio
    for feed in feeds[:1]:
        runner.run(feed)
    t = time.perf_counter()
    for feed in feeds:
        runner.run(feed)
    audio_ms = _ms_per_clip(time.perf_counter() - t, n)
    t = time.perf_counter()
    for idx in batches:
        pad_waveforms([waves[i] for i in idx])
        if feats is not None:
            pad_token_features([feats[i] for i in idx])
    ms["batching (pad)"] = _ms_per_clip(time.perf_counter() - t, n)

    model_path = bundle.audio_model("int8" if int8 else "fp32")
    try:
        split = ort_module_split(model_path, feeds, threads)
    except Exception as exc:  # the profiler is a diagnostic: never fail the bench on it
        split = {}
        out["note"] = f"ORT profiler split unavailable: {one_line(exc, limit=160)}"
    if split:
        merged: dict[str, float] = defaultdict(float)
        heads = set(engine.targets) | {"trunk", "heads"}
        for module, frac in split.items():
            label = "trunk + heads" if module in heads else MODULE_NAMES.get(module, "other (output scaling, unnamed nodes)")
            merged[label] += frac
        for label, frac in merged.items():
            ms[f"audio model: {label}"] = round(audio_ms * frac, 3)
        out["audio_model_split"] = {k: round(v, 4) for k, v in merged.items()}
    else:
        ms["audio model"] = audio_ms
    out["audio_model_ms_per_clip"] = audio_ms

    with tempfile.TemporaryDirectory(prefix="mos-bench-write-") as tmp:
        targets = engine.targets
        rows = [Row(f"clip_{k}.wav", str(f), captions[k] if k < len(captions) else None,
                    {tg: 5.0 + 0.001 * k for tg in targets}, 10.0, "ok") for k, f in enumerate(files)]
        t = time.perf_counter()
        with RowWriter(Path(tmp) / "rows.csv", "csv", targets, resume=False) as w:
            for r in rows:
                w.write(r)
        ms["writing (csv row, flushed)"] = _ms_per_clip(time.perf_counter() - t, n)
    out["sum_ms_per_clip"] = round(sum(ms.values()), 3)
    out["cpu_count"] = os.cpu_count()
    return out
