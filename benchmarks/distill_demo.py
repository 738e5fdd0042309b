"""Distillation on the built-in demo set: a frozen aisfx teacher (pooled head, MiniLM captions)
distilled into a conv student by embedding distillation, by the teacher's scores only, and the same
student on the human ratings alone; several seeds; then the speed on 10 s clips against DNSMOS.

    python benchmarks/distill_demo.py [--work benchmarks/out/distill] [--seeds 0,1,2]
        [--student-config edge] [--modes embedding,scores,human] [--demo-pool 1000] [--augment 0]
        [--teacher-epochs 20] [--epochs 15] [--out benchmarks/results/distill_demo.json]

Protocol (fixed before looking at figures), every step a `mos` command:
- data: the demo set (320 training + 96 validation clips of 2 s, XACLE layout, its own split);
  unlabelled pool: `--demo-pool N` unrated clips from the demo set's generator with another seed
  (with captions, no ratings);
- teacher: `mos train DATA --audio-encoder aisfx` (frozen, features cached, the pooled head,
  MiniLM captions), then `mos export`;
- per seed and mode, the student `mos distill TEACHER --data DATA --student-config S --seed K`:
  "embedding" (`student`): the pool (and `--augment` copies), embedding weight 1 (the default);
  "scores" (`scores-only`): the same with `--embedding-weight 0`; "human" (`human-only`): no pool,
  `--teacher-weight 0 --agree-weight 0 --embedding-weight 0`; all with `--epochs E` (patience 6);
- each `mos distill` ends with its own comparison: both bundles score the 96 validation clips end
  to end (`mos score`'s pipeline, every core, batch 16, 3 interleaved repeats, median clips/s);
- speed on 10 s clips: `mos bench` of the seed-0 embedding student and of the teacher, each with
  DNSMOS on the same 10 s clips in the same run (fp32 end to end, own caption each).
The results file records the commands, the machine and every distill.json; no absolute paths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {"embedding": "student", "scores": "scores-only", "human": "human-only"}
GOAL_SHARE, GOAL_SPEEDUP, GOAL_DNSMOS = 0.95, 15.0, 25.0


def run(cmd: list[str], log: Path) -> float:
    """Run a mos command (this checkout's), its output appended to `log`; the wall seconds it took."""
    shown = " ".join(["mos", *cmd])
    print(f"$ {shown}", flush=True)
    t0 = time.perf_counter()
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {shown}\n")
        f.flush()
        done = subprocess.run([sys.executable, "-m", "mos", *cmd], stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shown}; see {log}")
    return round(time.perf_counter() - t0, 1)


def rel(path: Path) -> str:
    return os.path.relpath(path, Path.cwd())


def bench_summary(path: Path) -> dict:
    """The end-to-end fp32 clips/s of a `mos bench` JSON and DNSMOS's on the same clips."""
    b = json.loads(path.read_text())
    return {k: b.get(k) for k in ("workload", "end_to_end", "peer", "machine")}


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/distill"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--student-config", default="edge")
    ap.add_argument("--modes", default="embedding,scores,human")
    ap.add_argument("--demo-pool", type=int, default=1000)
    ap.add_argument("--augment", type=int, default=0)
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--bench-clips", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distill_demo.json"))
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from mos.bench.machine import load_average, machine_info
    from mos.data.demo import build_demo

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data = build_demo(work / "data")
    runs = work / "runs"
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    seconds: dict[str, float] = {}
    commands: dict[str, str] = {}
    machine = machine_info()

    def step(name: str, cmd: list[str], done: Path | None = None) -> None:
        commands[name] = " ".join(["mos", *[rel(Path(c)) if Path(c).exists() else c for c in cmd]])
        if done is None or not done.exists():
            seconds[name] = run(cmd, log)

    teacher = runs / "teacher"
    step("teacher", ["train", str(data), "--audio-encoder", "aisfx", "--name", "teacher", "--runs-dir", str(runs),
                     "--epochs", str(args.teacher_epochs), "--overwrite"], teacher / "best_metrics.json")
    step("export", ["export", str(teacher)], teacher / "bundle" / "mos.json")
    common = [str(teacher), "--data", str(data), "--runs-dir", str(runs), "--student-config", args.student_config,
              "--demo-dir", str(work / "data"), "--teacher-cache", str(work / "teacher-cache"), "--quiet", "--overwrite",
              "--epochs", str(args.epochs)]
    extra = {"embedding": ["--demo-pool", str(args.demo_pool), "--augment", str(args.augment)],
             "scores": ["--demo-pool", str(args.demo_pool), "--augment", str(args.augment), "--embedding-weight", "0"],
             "human": ["--teacher-weight", "0", "--agree-weight", "0", "--embedding-weight", "0"]}
    reports: dict[str, dict] = {}
    for seed in seeds:
        for mode in modes:
            name = f"{MODES[mode]}-seed{seed}"
            step(name, ["distill", *common, "--name", name, "--seed", str(seed), *extra[mode]],
                 runs / name / "compare" / "student_scores.csv")
            reports[name] = json.loads((runs / name / "distill.json").read_text())
            r = reports[name]
            print(f"{name}: share {r['srcc_share']}, speed-up {r['speedup']}x", flush=True)

    benches = {}
    for who, bundle in (("student", runs / f"student-seed{seeds[0]}" / "bundle"), ("teacher", teacher / "bundle")):
        out = work / f"bench-{who}.json"
        step(f"bench-{who}", ["bench", "--bundle", str(bundle), "--clips", str(args.bench_clips), "--batch-sizes", "16",
                              "--no-eager", "--out", str(out)], out if who == "teacher" else None)
        benches[who] = bench_summary(out)

    summary = {}
    for mode in modes:
        names = [f"{MODES[mode]}-seed{s}" for s in seeds]
        share = [reports[n]["srcc_share"] for n in names]
        srcc = [float(np.mean([reports[n]["student"]["levels"][t]["utterance"]["srcc"]
                               for t in reports[n]["student"]["levels"]])) for n in names]
        ups = [reports[n]["speedup"] for n in names]
        summary[MODES[mode]] = {
            "mean_srcc": srcc, "mean_srcc_mean": round(float(np.mean(srcc)), 4),
            "mean_srcc_sd": round(float(np.std(srcc, ddof=1)), 4) if len(srcc) > 1 else None,
            "share": share, "share_mean": round(float(np.mean(share)), 4),
            "share_sd": round(float(np.std(share, ddof=1)), 4) if len(share) > 1 else None,
            "speedup": ups, "speedup_median": round(float(np.median(ups)), 2)}
    t_srcc = [float(np.mean([reports[n]["teacher"]["levels"][t]["utterance"]["srcc"]
                             for t in reports[n]["teacher"]["levels"]])) for n in reports]
    results = {
        "what": "mos distill on the demo set: aisfx teacher -> conv student by embedding distillation, by the "
                "teacher's scores only, and on human ratings only; seeds; 10 s speed against DNSMOS",
        "protocol": (__doc__ or "").split("Protocol (fixed before looking at figures), every step a `mos` command:\n")[1]
        .split("The results file")[0].strip(),
        "goal": f">= {GOAL_SHARE:.0%} of the teacher's SRCC at >= {GOAL_SPEEDUP:g}x its speed, >= {GOAL_DNSMOS:g}x DNSMOS",
        "machine": {**machine, "load_average_end": load_average()},
        "settings": vars(args) | {"work": None, "out": None},
        "commands": commands,
        "seconds": seconds,
        "teacher_best_metrics": json.loads((teacher / "best_metrics.json").read_text()),
        "teacher_mean_srcc": round(float(np.mean(t_srcc)), 4),
        "summary": summary,
        "runs": reports,
        "bench_10s": benches,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    for absolute in {str(work.resolve()), str(REPO)}:  # no machine paths in a committed file
        text = text.replace(absolute, "<work>" if absolute != str(REPO) else "<repo>")
    args.out.write_text(text + "\n")
    for name, s in summary.items():
        print(f"{name}: mean SRCC {s['mean_srcc_mean']} +- {s['mean_srcc_sd']}, share {s['share_mean']} +- "
              f"{s['share_sd']}, speed-up median {s['speedup_median']}x")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
