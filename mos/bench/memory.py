"""Peak memory of `mos score` on 100 vs 1,000 vs 10,000 files: each count is scored in a fresh
process (peak RSS only grows within a process), which reports its peak as JSON on stdout.

    python -m mos.bench.memory '{"bundle": ..., "inputs": ..., "captions": ..., "threads": 0, ...}'
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mos.bench.machine import current_rss_mb, peak_rss_mb


def probe(args: dict[str, Any]) -> dict[str, Any]:
    """Run one `mos score` (run_score) in this process; return counts, time and RSS figures."""
    from rich.console import Console

    from mos.runtime.scorer import ScoreOptions, run_score

    before = peak_rss_mb()
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = current_rss_mb()
            if rss is not None:
                samples.append(rss)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    opts = ScoreOptions(
        inputs=Path(args["inputs"]), bundle=Path(args["bundle"]),
        captions=Path(args["captions"]) if args.get("captions") else None,
        out=Path(args["out"]), device=args.get("device", "cpu"), threads=int(args.get("threads", 0)),
        batch_size=int(args.get("batch_size", 0)), int8=bool(args.get("int8", False)), progress=False,
    )
    t = time.perf_counter()
    summary = run_score(opts, Console(file=io.StringIO()))
    secs = time.perf_counter() - t
    stop.set()
    sampler.join(timeout=1.0)
    # RSS at 10%, 50% and 100% of the run (steady growth shows up as a rising series).
    marks = {}
    if samples:
        for q in (10, 50, 100):
            marks[f"rss_mb_at_{q}pct"] = round(samples[min(len(samples) - 1, len(samples) * q // 100)], 1)
    return {
        "files": summary.files, "scored": summary.scored, "failed": summary.failed,
        "seconds": round(secs, 2), "clips_per_s": round(summary.clips_per_s, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_mb": round(before, 1), **marks,
    }


def measure(bundle: Path, inputs: Path, captions: Path | None, threads: int, batch_size: int,
            int8: bool = False, device: str = "cpu", timeout: float = 900.0) -> dict[str, Any]:
    """`probe` in a fresh interpreter; raises RuntimeError with its stderr when it fails."""
    with tempfile.TemporaryDirectory(prefix="mos-bench-mem-") as tmp:
        args = {"bundle": str(bundle), "inputs": str(inputs), "captions": str(captions) if captions else None,
                "out": str(Path(tmp) / "scores.csv"), "threads": threads, "batch_size": batch_size,
                "int8": int8, "device": device}
        proc = subprocess.run([sys.executable, "-m", "mos.bench.memory", json.dumps(args)],
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-400:]
        raise RuntimeError(f"memory probe failed (exit {proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(json.dumps(probe(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
