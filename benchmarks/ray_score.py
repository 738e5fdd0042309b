"""Plain `mos score` vs `mos score --ray` (a local Ray) on this machine: steady clips/s and
start-up seconds, on the `mos bench` workload (generated 10 s speech-like wav clips, one
distinct caption each). Each configuration scores N/2 and N clips, --repeats times: the steady
rate is the marginal one, N/2 / (wall(N) - wall(N/2)) on median wall times, and start-up is the
rest of the small run's wall time (process start, sessions; with Ray also ray.init, the caption
pass and the actors). Rows reach the file in bursts (a Ray block, a local chunk), so the time to
the first row is recorded too but does not measure start-up. From Ray's rate per actor it writes
a paper estimate for N nodes (actors per node as --ray picks them by default).

    python benchmarks/make_bundle.py --run runs/bench --no-int8
    python benchmarks/ray_score.py [--bundle runs/bench/bundle] [--clips 400] [--seconds 10] [--repeats 3]
        [--out benchmarks/results/ray_score.json]

Each command runs as its own process, as a user runs it (`python -m mos score ...`). Runs are
interleaved (local, Ray, local with one thread, then the larger size) so that outside load hits
each alike; the load average is recorded before and after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

POLL_S = 0.02


def _rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def run_once(name: str, command: list[str], out: Path, clips: int) -> dict[str, Any]:
    """Run `mos score` to completion; timestamps (since launch) of every row count seen."""
    from mos.bench.machine import load_average

    load_before = load_average()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[tuple[float, int]] = []
    last = 0
    while proc.poll() is None:
        n = _rows(out)
        if n != last:
            seen.append((time.perf_counter() - start, n))
            last = n
        time.sleep(POLL_S)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{stderr}")
    n = _rows(out)
    if n != last:
        seen.append((wall, n))
    assert n == clips, (name, n)

    (t0, r0), (t1, r1) = seen[0], seen[-1]  # rows come in bursts (a Ray block, a local chunk)
    summary = re.search(r"([\d.]+) clips/s, real-time factor", stderr)
    return {
        "name": name,
        "startup_s": round(t0, 2),
        "first_rows": r0,
        "steady_clips_per_s": round((r1 - r0) / (t1 - t0), 2) if t1 > t0 else None,
        "wall_s": round(wall, 2),
        "whole_run_clips_per_s": round(clips / wall, 2),
        "summary_clips_per_s": float(summary.group(1)) if summary else None,
        "ray_plan": [line for line in stderr.splitlines() if line.startswith("ray: ")],
        "load_before": load_before,
        "load_after": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path("runs/bench/bundle"))
    p.add_argument("--clips", type=int, default=400, help="the large run; the small one is half")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3, help="runs of each configuration and size; medians are used")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ray_score.json"))
    args = p.parse_args(argv)

    from mos.bench.machine import machine_info
    from mos.bench.workload import generate
    from mos.runtime.ray_score import RayOptions, plan_actors

    configs = {
        "local": [],  # plain mos score: ORT's default threads (all cores), 2 reader threads
        "ray": ["--ray"],  # a local Ray started by the command: actors and threads as --ray picks them
        "local_1_thread": ["--threads", "1"],  # what one Ray actor (1 CPU, 1 thread) runs, without Ray
    }
    sizes = (args.clips // 2, args.clips)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mos-ray-bench-") as tmp:
        works = {n: generate(Path(tmp) / f"w{n}", n, seconds=args.seconds) for n in sizes}
        for repeat in range(args.repeats):  # interleaved: every configuration and size once per repeat
            for n in sizes:
                work = works[n]
                base = [sys.executable, "-m", "mos", "score", str(work.inputs), "--captions", str(work.captions_csv),
                        "--bundle", str(args.bundle), "--device", "cpu", "--quiet"]
                for name, extra in configs.items():
                    out = Path(tmp) / f"{name}-{n}.csv"
                    out.unlink(missing_ok=True)
                    runs.append({"clips": n, "repeat": repeat,
                                 **run_once(name, [*base, *extra, "--out", str(out)], out, n)})
                    print(json.dumps(runs[-1]), flush=True)
        workload = works[sizes[1]].describe()

    # The marginal rate between the two sizes is the steady rate; the rest of the small run's wall
    # time is start-up (process, sessions; for Ray also ray.init, the caption pass and the actors).
    results = {}
    for name in configs:
        walls = {n: [r["wall_s"] for r in runs if r["name"] == name and r["clips"] == n] for n in sizes}
        small, large = (statistics.median(walls[n]) for n in sizes)
        rate = (sizes[1] - sizes[0]) / (large - small)
        results[name] = {"steady_clips_per_s": round(rate, 2), "startup_s": round(small - sizes[0] / rate, 2),
                         "median_wall_s": {str(n): statistics.median(walls[n]) for n in sizes},
                         "wall_s": {str(n): walls[n] for n in sizes}}
        print(name, json.dumps(results[name]), flush=True)
    ray_runs = [r for r in runs if r["name"] == "ray"]
    plan = " ".join(ray_runs[-1]["ray_plan"])
    actors = int(re.search(r"(\d+) actor\(s\)", plan).group(1))  # type: ignore[union-attr]
    per_actor = results["ray"]["steady_clips_per_s"] / actors
    cores = os.cpu_count() or 1
    estimate = {
        "per_actor_clips_per_s": round(per_actor, 2),
        "assumes": "CPU nodes like this one's cores; --ray's default of 3/4 of each node's CPUs as 1-CPU actors; "
                   "reads keep up; the driver and shared storage keep up; no start-up",
        "nodes": {},
    }
    for cpus_per_node in (16, 64):
        per_node = plan_actors(cpus_per_node, 0, "cpu", RayOptions()).actors * per_actor
        estimate["nodes"][f"{cpus_per_node}_cpus"] = {str(n): round(n * per_node, 1) for n in (1, 4, 16)}
    report = {
        "what": "plain mos score vs mos score --ray (local Ray), this machine",
        "command": "python benchmarks/ray_score.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "bundle": str(args.bundle),
        "workload": {**workload, "clips": list(sizes), "where": "generated in temporary folders, removed after the run"},
        "machine": {**machine_info(), "cores_seen": cores},
        "results": results,
        "runs": runs,
        "paper_estimate_clips_per_s": estimate,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
