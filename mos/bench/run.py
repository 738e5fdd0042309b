"""`run_bench`: the whole measurement, in order: workload, end to end (mos score's engine), the
audio path with captions already encoded, the model alone (PyTorch eager vs ONNX Runtime fp32 vs
int8, threads x batch sizes), batch-1 latency, a stage profile, the DNSMOS peer and memory.

torch is never imported here at module level: it is optional, used only for the eager backend."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from mos.audio import read_audio, window_samples
from mos.bench import workload as wl
from mos.bench.backends import build_backends, interleaved, make_batches, agreement
from mos.bench.machine import load_average, machine_info, usable_cores
from mos.bench.stats import percentile, spread
from mos.bundle import Bundle, load_bundle
from mos.errors import MosError, one_line
from mos.files import sha256_file
from mos.runtime.engine import EngineOptions, ScoreEngine
from mos.runtime.scorer import ScoreOptions, run_score
from mos.runtime.session import CUDA, import_onnxruntime
from mos.windows import split_windows

SCHEMA = "mos.bench/1"
DEFAULT_BUNDLE = Path("runs/demo/bundle")
DEFAULT_OUT = Path("bench.json")

# The project's targets (docs/design.md, "The numbers we hold ourselves to"): the end-to-end
# figures are for the default edge bundle on a 2-core CPU, the GPU figure for one H100.
TARGETS = {
    "e2e_fp32_clips_per_s": 150.0,
    "e2e_int8_clips_per_s": 200.0,
    "ort_vs_eager": 1.5,
    "vs_dnsmos": 30.0,
    "e2e_gpu_clips_per_s": 5000.0,
}


@dataclass
class BenchOptions:
    """What `mos bench` measures. None means: the default, or the --quick default."""

    bundle: Path = DEFAULT_BUNDLE
    data: Path | None = None  # a folder of audio; None: generate the workload
    captions: Path | None = None  # captions for --data (default: a generated one per file)
    clips: int | None = None  # workload size (200; quick 48)
    clip_seconds: float = 10.0  # generated clip length
    device: str = "auto"
    threads: list[int] | None = None  # intra-op threads of one run to try (1..cores; quick: cores)
    streams: list[int] | None = None  # concurrent 1-thread runs to try, mos score's CPU default (cores)
    batch_sizes: list[int] | None = None  # (1, 8, 16, 32; quick 1, 16)
    repeats: int | None = None  # timed repetitions (3; quick 1)
    out: Path | None = DEFAULT_OUT
    quick: bool = False
    checkpoint: Path | None = None  # for PyTorch eager; None: the run folder holding the bundle
    eager: bool = True
    peer: bool = True
    peer_clips: int | None = None  # DNSMOS clips (16; quick 4)
    peer_bundle: Path | None = None  # a second peer: an audio-only bundle timed on the same clips
    memory: bool = False  # peak RSS scoring 100 / 1,000 / 10,000 files (fresh process each)
    memory_counts: tuple[int, ...] = (100, 1000, 10000)
    memory_clip_seconds: float = 0.5
    model_clips: int | None = None  # clips for the model-alone grid (64; quick 32)
    latency_clips: int | None = None  # clips timed one at a time (100; quick 24)
    profile: bool = True
    workers: int = 2  # reader threads, as mos score's default
    seed: int = 0
    progress: bool = True

    def resolved(self) -> BenchOptions:
        cores = usable_cores()
        q = self.quick

        def pick(value: Any, full: Any, quick: Any) -> Any:
            return value if value is not None else (quick if q else full)

        return replace(
            self,
            clips=max(1, pick(self.clips, 200, 48)),
            threads=sorted({max(1, int(t)) for t in pick(self.threads, list(range(1, cores + 1)), [cores])}),
            streams=sorted({max(1, int(s)) for s in pick(self.streams, [cores], [cores])}),
            batch_sizes=sorted({max(1, int(b)) for b in pick(self.batch_sizes, [1, 8, 16, 32], [1, 16])}),
            repeats=max(1, pick(self.repeats, 3, 1)),
            peer_clips=max(1, pick(self.peer_clips, 16, 4)),
            model_clips=max(1, pick(self.model_clips, 64, 32)),
            latency_clips=max(1, pick(self.latency_clips, 100, 24)),
            memory=self.memory and not q,
        )


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def portable_path(path: Path | str) -> str:
    """A path as a report that may be committed records it: relative to the current directory
    (with ../ where it lies outside), never this machine's absolute path."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path.cwd().resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative form
        return Path(path).name


def find_checkpoint(bundle: Bundle, given: Path | None, notes: list[str]) -> Path | None:
    """The checkpoint for the eager comparison: the one given, else the one mos.json names, else
    <run dir>/checkpoints/best.pt beside the bundle. It must be the bundle's own (sha256)."""
    training = bundle.meta.get("training") or {}
    candidates: list[Path] = []
    if given is not None:
        candidates.append(Path(given))
    else:
        ref = training.get("checkpoint")
        if ref:
            p = Path(ref)
            candidates.append(p if p.is_absolute() else (bundle.root / p).resolve())
        candidates.append(bundle.root.resolve().parent / "checkpoints" / "best.pt")
    for path in candidates:
        if path.is_dir():
            path = path / "checkpoints" / "best.pt"
        if not path.is_file():
            continue
        want = training.get("checkpoint_sha256")
        if want and sha256_file(path) != want:
            msg = f"{path}: not the checkpoint this bundle was exported from (sha256 differs from mos.json)"
            if given is not None:
                raise MosError(msg)
            notes.append(f"PyTorch eager skipped: {msg}")
            return None
        return path
    if given is not None:
        raise MosError(f"--checkpoint {given}: no such checkpoint file or run folder")
    notes.append("PyTorch eager skipped: no checkpoint found beside the bundle (pass --checkpoint)")
    return None


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise MosError(f"--device {device!r}: choose auto, cpu or cuda")
    ort = import_onnxruntime()
    has_cuda = CUDA in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise MosError(f"--device cuda: this onnxruntime ({ort.__version__}) has no CUDAExecutionProvider")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def _variants(bundle: Bundle, device: str) -> list[str]:
    have = (bundle.meta.get("variants") or {}).keys()
    out = ["fp32"]
    if device == "cpu" and "int8" in have:
        out.append("int8")
    if device == "cuda" and "fp16" in have:
        out.append("fp16")
    return out


class _Log:
    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, text: str) -> None:
        if self.enabled:
            self.console.print(f"[dim][{time.perf_counter() - self.start:6.1f} s] {text}[/dim]", highlight=False)


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------


def layouts(opts: BenchOptions, device: str) -> list[tuple[int, int]]:
    """(streams, threads per run) cells: one run of each thread count, then each stream count of
    1-thread runs (what mos score does by default on CPU). On a GPU: one run, default threads."""
    if device != "cpu":
        return [(1, 0)]
    assert opts.threads is not None and opts.streams is not None
    return [(1, t) for t in opts.threads] + [(s, 1) for s in opts.streams if s > 1]


def layout_name(streams: int, threads: int) -> str:
    return f"{streams} x {threads} thread{'s' if threads != 1 else ''}" if streams > 1 else f"{threads or 'default'} threads"


def _score_once(opts: BenchOptions, work: wl.Workload, device: str, layout: tuple[int, int], batch: int, variant: str,
                out: Path) -> tuple[float, float, str, int]:
    """One `mos score` run (run_score) -> (clips/s, real-time factor, provider, failed)."""
    summary = run_score(
        ScoreOptions(inputs=work.inputs, bundle=opts.bundle, captions=work.captions_csv, out=out,
                     device=device, streams=layout[0], threads=layout[1], batch_size=batch, int8=variant == "int8",
                     fp16=variant == "fp16",
                     workers=opts.workers, progress=False),
        Console(file=io.StringIO()),
    )
    return summary.clips_per_s, summary.rtf, summary.provider, summary.failed


def end_to_end(opts: BenchOptions, work: wl.Workload, device: str, variants: list[str],
               cells_layouts: list[tuple[int, int]], log: _Log, tmp: Path,
               extra: AudioPath | None = None) -> list[dict[str, Any]]:
    out = tmp / "scores.csv"
    log("end to end: warm-up run (page cache, sessions)")
    _score_once(opts, work, device, cells_layouts[-1], opts.batch_sizes[-1], "fp32", out)
    rows: list[dict[str, Any]] = []
    cells = [(v, lay, b) for lay in cells_layouts for b in opts.batch_sizes for v in variants]
    runs: dict[tuple[str, tuple[int, int], int], list[tuple[float, float]]] = {c: [] for c in cells}
    provider = ""
    failed = 0
    for rep in range(opts.repeats):
        for cell in cells:  # interleaved: outside load hits every cell alike
            v, lay, b = cell
            cps, rtf, provider, f = _score_once(opts, work, device, lay, b, v, out)
            failed = max(failed, f)
            runs[cell].append((cps, rtf))
            log(f"end to end {v} {layout_name(*lay)} batch {b}: {cps:.1f} clips/s (repeat {rep + 1}/{opts.repeats})")
        if extra is not None:
            rate = extra.once()
            log(f"audio path (captions cached) fp32 {layout_name(extra.streams, extra.threads)} batch "
                f"{extra.engine.batch_size}: {rate:.1f} clips/s (repeat {rep + 1}/{opts.repeats})")
    for (v, (s, t), b), vals in runs.items():
        rows.append({"variant": v, "provider": provider, "streams": s, "threads": t, "batch_size": b,
                     "clips": len(work.files), "clips_per_s": spread([c for c, _ in vals], 1),
                     "rtf": spread([r for _, r in vals], 0), "failed": failed})
    return rows


class AudioPath:
    """mos score's pipeline (reader pool, batching, audio model) with every caption already
    encoded and no writing: what an audio-only model costs end to end. Timed once per repeat,
    interleaved with the end-to-end cells."""

    def __init__(self, opts: BenchOptions, bundle: Bundle, work: wl.Workload, device: str, layout: tuple[int, int],
                 batch: int) -> None:
        from mos.runtime.inputs import Job
        from mos.runtime.pipeline import PipelineOptions, score_jobs
        from mos.runtime.text import CaptionTable

        self.score_jobs = score_jobs
        options = EngineOptions(device=device, streams=layout[0], threads=layout[1], batch_size=batch)
        self.engine = ScoreEngine(bundle, options)
        self.jobs = [Job(id=i, path=f, caption=work.captions.get(i)) for i, f in zip(work.ids, work.files)]
        if self.engine.text is not None:  # every caption encoded beforehand, looked up while scoring
            table = CaptionTable.build(self.engine.text, [j.caption or "" for j in self.jobs])
            self.engine = ScoreEngine(bundle, options, text=table)
        self.pipe = PipelineOptions(workers=opts.workers, batch_size=self.engine.batch_size)
        self.streams, self.threads = layout
        self.rates: list[float] = []
        for _ in self.score_jobs(self.engine, self.jobs[: min(len(self.jobs), 2 * self.engine.batch_size)], self.pipe):
            pass  # warm-up

    def once(self) -> float:
        t = time.perf_counter()
        n = sum(1 for _ in self.score_jobs(self.engine, self.jobs, self.pipe))
        self.rates.append(n / (time.perf_counter() - t))
        return self.rates[-1]

    def result(self) -> dict[str, Any]:
        return {"variant": "fp32", "streams": self.streams, "threads": self.threads, "batch_size": self.engine.batch_size,
                "clips": len(self.jobs), "clips_per_s": spread(self.rates, 1),
                "what": "decode + resample + audio model (reader pool, batching); captions pre-encoded; no writing"}


def decode_clips(bundle: Bundle, work: wl.Workload, count: int) -> tuple[list[np.ndarray], list[str | None]]:
    """The first `count` clips decoded at the model rate, cut into windows as the engine does."""
    window = window_samples(bundle.window_seconds, bundle.sample_rate)
    waves: list[np.ndarray] = []
    caps: list[str | None] = []
    for i, f in zip(work.ids[:count], work.files[:count]):
        for piece in split_windows(read_audio(f, bundle.sample_rate), window):
            waves.append(piece)
            caps.append(work.captions.get(i))
    return waves, caps


def model_alone(opts: BenchOptions, bundle: Bundle, work: wl.Workload, device: str, threads: list[int],
                checkpoint: Path | None, notes: list[str], log: _Log) -> dict[str, Any]:
    waves, caps = decode_clips(bundle, work, opts.model_clips)
    text = None
    if bundle.uses_text:
        enc = ScoreEngine(bundle, EngineOptions(device=device, threads=threads[-1]))
        assert enc.text is not None
        text = enc.text.encode([c or "" for c in caps])
        del enc
    backends = build_backends(bundle, device, checkpoint if opts.eager else None, notes)
    rows: list[dict[str, Any]] = []
    try:
        equal = not bundle.padding_invariant
        check = agreement(backends, make_batches(waves[:4], text[:4] if text else None, 4, equal))
        thread_list = threads if any(b.threaded for b in backends) else [0]
        for t in thread_list:
            for b in backends:
                b.set_threads(t)
            for bs in opts.batch_sizes:
                batches = make_batches(waves, text, bs, equal)
                rates = interleaved(backends, batches, opts.repeats)
                for be in backends:
                    rows.append({"backend": be.name, "provider": be.provider, "threads": t if be.threaded else None,
                                 "batch_size": bs, "clips": len(waves), "clips_per_s": spread(rates[be.name], 1)})
                log("model alone threads {} batch {}: ".format(t, bs)
                    + ", ".join(f"{k} {np.median(v):.1f}" for k, v in rates.items()) + " clips/s")
    finally:
        for b in backends:
            b.close()
    # Ratios against eager, same threads and batch.
    ratios = []
    eager = next((b.name for b in backends if b.name.startswith("torch-eager")), None)
    if eager:
        index = {(r["backend"], r["threads"], r["batch_size"]): r for r in rows}
        for r in rows:
            if r["backend"] == eager:
                continue
            e = index.get((eager, r["threads"], r["batch_size"]))
            if e and e["clips_per_s"]["median"]:
                ratios.append({"backend": r["backend"], "vs": eager, "threads": r["threads"],
                               "batch_size": r["batch_size"],
                               "ratio": round(r["clips_per_s"]["median"] / e["clips_per_s"]["median"], 2)})
    return {"clip_seconds": round(float(np.mean([w.shape[0] for w in waves])) / bundle.sample_rate, 2),
            "rows": rows, "ratios": ratios, "max_abs_diff_vs_ort_fp32": {k: float(f"{v:.3g}") for k, v in check.items()},
            "backends": [{"name": b.name, "provider": b.provider} for b in backends]}


def latency(opts: BenchOptions, bundle: Bundle, work: wl.Workload, device: str, threads: int, variants: list[str],
            log: _Log) -> list[dict[str, Any]]:
    """Per-clip wall time through the engine, one clip at a time: decode + resample + caption
    (each clip's own, so never cached) + audio model. The first 2 clips warm up and are excluded."""
    out = []
    n = min(len(work.files), opts.latency_clips + 2)
    for v in variants:
        engine = ScoreEngine(bundle, EngineOptions(device=device, threads=threads, int8=v == "int8", fp16=v == "fp16",
                                                   batch_size=1))
        times = []
        for k in range(n):
            t = time.perf_counter()
            wave = read_audio(work.files[k], engine.sample_rate)
            engine.score_arrays([wave], [work.captions.get(work.ids[k])])
            if k >= 2 or n <= 2:
                times.append(1000.0 * (time.perf_counter() - t))
        out.append({"variant": v, "provider": engine.provider, "threads": threads, "batch_size": 1, "clips": len(times),
                    "p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2),
                    "min_ms": round(min(times), 2), "max_ms": round(max(times), 2)})
        log(f"latency {v} threads {threads}: p50 {out[-1]['p50_ms']:.1f} ms, p95 {out[-1]['p95_ms']:.1f} ms")
    return out


def memory_growth(opts: BenchOptions, bundle_sample_rate: int, device: str, threads: int, log: _Log,
                  tmp: Path) -> dict[str, Any]:
    from mos.bench.memory import measure

    rows = []
    for count in opts.memory_counts:
        root = tmp / f"memory_{count}"
        w = wl.generate(root, count, opts.memory_clip_seconds, bundle_sample_rate, seed=opts.seed + 7,
                        distinct_audio=min(count, 100))
        log(f"memory: scoring {count} files of {opts.memory_clip_seconds:g} s in a fresh process")
        r = measure(opts.bundle, w.inputs, w.captions_csv, threads, 0, device=device)
        rows.append(r)
        log(f"memory {count} files: peak RSS {r['peak_rss_mb']:.0f} MB, {r['clips_per_s']:.0f} clips/s")
    base = rows[0]["peak_rss_mb"] if rows else None
    for r in rows:
        r["growth_mb_vs_first"] = round(r["peak_rss_mb"] - base, 1) if base is not None else None
    return {"clip_seconds": opts.memory_clip_seconds, "threads": threads or "default", "batch_size": "default",
            "captions": "one distinct caption per file", "rows": rows,
            "audio": "100 distinct clips hard-linked under distinct names (each file decoded)"}


def _best(rows: list[dict[str, Any]], key: str, **match: Any) -> dict[str, Any] | None:
    cand = [r for r in rows if all(r.get(k) == v for k, v in match.items()) and r[key]["median"] is not None]
    return max(cand, key=lambda r: r[key]["median"], default=None)


def check_targets(report: dict[str, Any], max_threads: int, device: str) -> list[dict[str, Any]]:
    """The project's targets (TARGETS, docs/design.md) vs what this run measured (the best cell of
    the grid for each figure)."""
    out: list[dict[str, Any]] = []
    e2e = report.get("end_to_end") or []

    def add(name: str, target: float, measured: float | None, where: str) -> None:
        out.append({"figure": name, "target": target, "measured": None if measured is None else round(measured, 2),
                    "met": None if measured is None else measured >= target, "where": where})

    if device == "cpu":
        for v, key in (("fp32", "e2e_fp32_clips_per_s"), ("int8", "e2e_int8_clips_per_s")):
            best = _best(e2e, "clips_per_s", variant=v)
            add(f"end to end {v}, clips/s", TARGETS[key], best["clips_per_s"]["median"] if best else None,
                f"{layout_name(best.get('streams', 1), best['threads'])}, batch {best['batch_size']}" if best
                else "not measured")
    else:
        best = _best(e2e, "clips_per_s", variant="fp32")
        add("end to end on the GPU, clips/s", TARGETS["e2e_gpu_clips_per_s"],
            best["clips_per_s"]["median"] if best else None, f"batch {best['batch_size']}" if best else "not measured")
    ma = report.get("model_alone") or {}
    rows = ma.get("rows") or []
    eager = next((r for r in rows if r["backend"].startswith("torch-eager")), None)
    fp32_name = next((r["backend"] for r in rows if r["backend"].startswith("ort-fp32")), "ort-fp32")
    if eager:
        # The median of the per-cell ratios: each compares ORT and eager at the same threads and
        # batch in interleaved runs, so outside load hits both alike. Comparing the best cell of
        # each instead would pit cells timed at different moments of a shared machine.
        cell = [x["ratio"] for x in ma.get("ratios", []) if x["backend"] == fp32_name]
        be = _best(rows, "clips_per_s", backend=eager["backend"])
        bo = _best(rows, "clips_per_s", backend=fp32_name)
        best = (f"; best cells {bo['clips_per_s']['median']:g} vs {be['clips_per_s']['median']:g} clips/s"
                if be and bo else "")
        add("ORT fp32 / PyTorch eager (model alone, median of same-cell ratios)", TARGETS["ort_vs_eager"],
            float(np.median(cell)) if cell else None,
            f"{len(cell)} cells, {min(cell):.2f}x-{max(cell):.2f}x{best}" if cell else "")
    else:
        add("ORT fp32 / PyTorch eager", TARGETS["ort_vs_eager"], None, "eager not measured")
    peer = report.get("peer") or {}
    best = _best(e2e, "clips_per_s", variant="fp32")
    if peer.get("clips_per_s") and best:
        add("end to end fp32 / DNSMOS", TARGETS["vs_dnsmos"], best["clips_per_s"]["median"] / peer["clips_per_s"],
            "same clips; DNSMOS decode + resample + model")
    else:
        add("end to end fp32 / DNSMOS", TARGETS["vs_dnsmos"], None, peer.get("skipped", "peer not measured"))
    mem = (report.get("memory") or {}).get("rows") or []
    if len(mem) >= 2:
        first, last = mem[0], mem[-1]
        growth = last["peak_rss_mb"] - first["peak_rss_mb"]
        out.append({"figure": f"peak RSS growth {first['files']} -> {last['files']} files, MB",
                    "target": "flat (within 10% of the first)", "measured": round(growth, 1),
                    "met": growth <= 0.10 * first["peak_rss_mb"], "where": f"{first['peak_rss_mb']:.0f} -> {last['peak_rss_mb']:.0f} MB"})
    return out


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def run_bench(opts: BenchOptions, console: Console | None = None) -> dict[str, Any]:
    """Measure, print the tables on `console`, write JSON to `opts.out` (when set); return the report."""
    from mos.bench.report import print_report

    console = console or Console()
    opts = opts.resolved()
    log = _Log(console, opts.progress)
    notes: list[str] = []
    started = time.perf_counter()
    device = resolve_device(opts.device)
    bundle = load_bundle(opts.bundle)
    peer_bundle = load_bundle(opts.peer_bundle) if opts.peer_bundle is not None else None
    if peer_bundle is not None:
        from mos.bench.peer import check_peer_bundle

        check_peer_bundle(peer_bundle)
    threads = opts.threads if device == "cpu" else [0]
    max_threads = threads[-1]
    lays = layouts(opts, device)
    variants = _variants(bundle, device)
    if device == "cpu" and "int8" not in variants:
        notes.append("no int8 variant in the bundle (mos export --quantize int8): int8 not measured")
    checkpoint = find_checkpoint(bundle, opts.checkpoint, notes) if opts.eager else None
    info = machine_info()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": _command_line(),
        "machine": info,
        "device": device,
        "bundle": {"path": portable_path(opts.bundle), "targets": bundle.target_names, "uses_text": bundle.uses_text,
                   "text_encoder": (bundle.meta.get("text") or {}).get("encoder"),
                   "sample_rate": bundle.sample_rate, "variants": sorted((bundle.meta.get("variants") or {}).keys()),
                   "audio_model_mb": round(bundle.audio_model().stat().st_size / 1e6, 2),
                   "checkpoint": portable_path(checkpoint) if checkpoint else None},
        "settings": {k: (portable_path(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()
                     if k not in ("progress",)},
    }
    with tempfile.TemporaryDirectory(prefix="mos-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if opts.data is None:
            log(f"workload: writing {opts.clips} clips of {opts.clip_seconds:g} s at {bundle.sample_rate} Hz")
            work = wl.generate(tmp / "workload", opts.clips, opts.clip_seconds, bundle.sample_rate, opts.seed)
        else:
            work = wl.from_folder(opts.data, tmp, opts.clips, opts.captions)
        report["workload"] = {"inputs": portable_path(opts.data) if opts.data is not None
                              else "generated in a temporary folder (removed after the run)", **work.describe()}
        audio_total = sum(_duration(f) for f in work.files)
        report["workload"]["audio_seconds"] = round(audio_total, 1)

        path: AudioPath | None = None
        try:
            path = AudioPath(opts, bundle, work, device, lays[-1], 16 if device == "cpu" else 64)
        except Exception as exc:  # a diagnostic: never fail the bench on it
            notes.append(f"audio path not measured: {one_line(exc, limit=200)}")
        report["end_to_end"] = end_to_end(opts, work, device, variants, lays, log, tmp, path)
        if path is not None:
            report["audio_path"] = path.result()
            del path
        report["model_alone"] = model_alone(opts, bundle, work, device, threads, checkpoint, notes, log)
        report["latency"] = latency(opts, bundle, work, device, max_threads, variants, log)
        if opts.profile and device == "cpu":
            from mos.bench.profile import stage_profile

            n = min(len(work.files), opts.model_clips)
            caps = [work.captions.get(i) for i in work.ids[:n]]
            report["profile"] = []
            for v in (variants if not opts.quick else ["fp32"]):
                report["profile"].append(stage_profile(bundle, work.files[:n], caps, max_threads, 16, v == "int8"))
                log(f"profile {v}: " + ", ".join(f"{k} {x:.2f}" for k, x in report["profile"][-1]["ms_per_clip"].items())
                    + " ms/clip")
        if opts.peer:
            from mos.bench.peer import peer_missing, run_dnsmos

            why = peer_missing()
            if why is None:
                log(f"peer: DNSMOS on {min(opts.peer_clips, len(work.files))} clips (first call compiles; excluded)")
                try:
                    report["peer"] = run_dnsmos(work.files[: opts.peer_clips])
                except Exception as exc:
                    report["peer"] = {"skipped": f"DNSMOS failed: {one_line(exc, limit=200)}"}
            else:
                report["peer"] = {"skipped": why}
        else:
            report["peer"] = {"skipped": "--no-peer"}
        if peer_bundle is not None:
            from mos.bench.peer import run_bundle_peer

            log(f"peer: bundle {opts.peer_bundle} on {min(opts.peer_clips, len(work.files))} clips")
            report["peer_bundle"] = run_bundle_peer(peer_bundle, work.files[: opts.peer_clips], device, max_threads)
        if opts.memory:
            report["memory"] = memory_growth(opts, bundle.sample_rate, device, 0, log, tmp)  # mos score's defaults
    report["targets"] = check_targets(report, max_threads, device)
    report["notes"] = notes
    report["machine"]["load_average_end"] = load_average()
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_report(report, console)
    if opts.out is not None:
        out = Path(opts.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {out}", highlight=False)
    return report


def _command_line() -> str:
    """How this process was started, e.g. `mos bench --quick` or `python -m mos.bench --quick`."""
    import shlex

    argv = list(sys.argv)
    head = "python -m mos.bench" if argv and argv[0].endswith("__main__.py") else Path(argv[0]).name if argv else "?"
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


def _duration(path: Path) -> float:
    from mos.audio import audio_duration

    try:
        return audio_duration(path)
    except MosError:
        return 0.0
