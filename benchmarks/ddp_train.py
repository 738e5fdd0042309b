"""`mos train` on two DDP processes (`--nproc 2`, gloo, one thread each) vs one process (two
threads, and one thread) on this CPU: seconds per optimiser step with the same global batch.

Each configuration trains the same generated demo set (--train clips of --seconds s, 16
validation clips) for --epochs epochs, --repeats times, interleaved so that outside load hits
each alike. A step's time is an epoch's wall time (metrics.jsonl `seconds`: training and the
small validation pass) over its optimiser steps, the median over the epochs after the first (the
first fills the audio cache) and over repeats; start-up is the command's wall time minus its
epochs. The load average is recorded before each run.

    python benchmarks/ddp_train.py [--train 96] [--seconds 1.0] [--batch-size 16] [--epochs 3]
        [--repeats 2] [--out benchmarks/results/ddp_train.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mos.data.demo import DemoConfig, build_demo

CONFIGS = {  # name -> (extra arguments, OMP_NUM_THREADS of each process)
    "1 process x 2 threads": ((), "2"),
    "1 process x 1 thread": ((), "1"),
    "2 processes x 1 thread (DDP)": (("--nproc", "2"), "1"),
}


def run_once(data: Path, runs: Path, name: str, extra: tuple[str, ...], threads: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "mos", "train", str(data), "--name", name, "--runs-dir", str(runs), "--overwrite",
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--text-encoder", "none",
           "--patience", "100", *extra]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    lines = [json.loads(x) for x in (runs / name / "metrics.jsonl").read_text().splitlines()][1:]
    steps = [b["steps"] - a["steps"] for a, b in zip([{"steps": 0}, *lines], lines)]
    per_step = [x["seconds"] / s for x, s in zip(lines, steps)][1:]
    return {"wall_s": round(wall, 2), "load_before": round(load, 2), "steps_per_epoch": steps[-1],
            "epoch_s": [x["seconds"] for x in lines], "step_s": per_step,
            "startup_s": round(wall - sum(x["seconds"] for x in lines), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ddp_train.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = build_demo(Path(tmp) / "demo", DemoConfig(n_train=args.train, n_validation=16, seconds=args.seconds))
        runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        for r in range(args.repeats):
            for i, (name, (extra, threads)) in enumerate(CONFIGS.items()):
                res = run_once(data, Path(tmp) / "runs", f"c{i}", extra, threads, args)
                runs[name].append(res)
                print(f"{name} (repeat {r + 1}): {statistics.median(res['step_s']):.3f} s/step, "
                      f"start-up {res['startup_s']} s, load {res['load_before']}", flush=True)
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        steps = [s for res in results for s in res["step_s"]]
        summary[name] = {"step_s_median": round(statistics.median(steps), 4), "step_s_min": round(min(steps), 4),
                         "startup_s_median": round(statistics.median(r["startup_s"] for r in results), 2)}
    base = summary["1 process x 2 threads"]["step_s_median"]
    for s in summary.values():
        s["speedup_vs_1x2"] = round(base / s["step_s_median"], 2)
    out = {"workload": {"train_clips": args.train, "validation_clips": 16, "clip_seconds": args.seconds,
                        "global_batch": args.batch_size, "epochs": args.epochs, "repeats": args.repeats,
                        "model": "conv encoder, fusion head, no text"},
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "summary": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
