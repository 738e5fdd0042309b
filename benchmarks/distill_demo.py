"""Distillation on the built-in demo set: a frozen aisfx teacher (pooled head, MiniLM captions)
distilled into a small conv student, against the same student trained on the human ratings alone.

    python benchmarks/distill_demo.py [--work benchmarks/out/distill] [--student-config small]
        [--teacher-epochs 20] [--epochs 8] [--baseline-epochs 20] [--augment 1] [--out benchmarks/results/distill_demo.json]

Protocol (fixed before looking at figures), every step a `mos` command:
- data: the demo set (320 training + 96 validation clips of 2 s, XACLE layout, its own split);
  unlabelled pool: the training audio of a second demo set made with another seed (320 clips,
  with its captions, no ratings used);
- teacher: `mos train DATA --audio-encoder aisfx` (frozen, features cached, the pooled head,
  MiniLM captions), then `mos export`;
- student: `mos distill TEACHER --data DATA --unlabeled POOL --captions POOL_CAPTIONS --augment N
  --student-config S` (human and teacher targets, weight 0.5, rank agreement 0.5);
- baseline: the same student size trained on the human ratings alone, through the same command
  with `--teacher-weight 0 --agree-weight 0` and no pool (the teacher only labels, for the table);
  epochs are set so both see about as many clips (8 x 1,280 vs 20 x 320: this CPU's time limit,
  not a tuned choice);
- each `mos distill` ends with its own comparison: both bundles score the 96 validation clips end
  to end (`mos score`'s pipeline, every core, batch 16, 3 interleaved repeats, median clips/s).
The results file records the commands, the machine and both distill.json contents; no absolute paths.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/distill"))
    ap.add_argument("--student-config", default="small")
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=8, help="the distilled student's epochs (1,280 clips each)")
    ap.add_argument("--baseline-epochs", type=int, default=20, help="the human-only student's epochs (320 clips each)")
    ap.add_argument("--augment", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distill_demo.json"))
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from mos.bench.machine import machine_info
    from mos.data.demo import DemoConfig, build_demo

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data = build_demo(work / "data")
    pool = build_demo(work / "pool", DemoConfig(seed=1))
    runs = work / "runs"
    seconds: dict[str, float] = {}
    commands: dict[str, str] = {}

    def step(name: str, cmd: list[str]) -> None:
        commands[name] = " ".join(["mos", *[rel(Path(c)) if Path(c).exists() else c for c in cmd]])
        seconds[name] = run(cmd, log)

    teacher = runs / "teacher"
    if not (teacher / "bundle" / "mos.json").is_file():
        step("teacher", ["train", str(data), "--audio-encoder", "aisfx", "--name", "teacher", "--runs-dir", str(runs),
                         "--epochs", str(args.teacher_epochs), "--overwrite"])
        step("export", ["export", str(teacher)])
    common = [str(teacher), "--data", str(data), "--runs-dir", str(runs), "--student-config", args.student_config,
              "--quiet", "--overwrite"]
    step("student", ["distill", *common, "--name", "student", "--unlabeled", str(pool / "wav" / "train"),
                     "--captions", str(pool / "meta_data" / "train.csv"), "--augment", str(args.augment), "--epochs", str(args.epochs)])
    step("human_only", ["distill", *common, "--name", "human-only", "--teacher-weight", "0", "--agree-weight", "0",
                        "--epochs", str(args.baseline_epochs)])

    results = {
        "what": "mos distill on the demo set: aisfx teacher -> conv student, vs the same student on human ratings only",
        "protocol": (__doc__ or "").split("Protocol (fixed before looking at figures), every step a `mos` command:\n")[1]
        .split("The results file")[0].strip(),
        "machine": machine_info(),
        "commands": commands,
        "seconds": seconds,
        "teacher_best_metrics": json.loads((teacher / "best_metrics.json").read_text()) if (teacher / "best_metrics.json").is_file() else None,
        "student": json.loads((runs / "student" / "distill.json").read_text()),
        "human_only": json.loads((runs / "human-only" / "distill.json").read_text()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    for absolute in {str(work.resolve()), str(REPO)}:  # no machine paths in a committed file
        text = text.replace(absolute, "<work>" if absolute != str(REPO) else "<repo>")
    args.out.write_text(text + "\n")
    for name in ("student", "human_only"):
        r = results[name]
        print(f"{name}: teacher SRCC share {r['srcc_share']}, speed-up {r['speedup']}x "
              f"(teacher {r['teacher']['clips_per_s']} clips/s, student {r['student']['clips_per_s']} clips/s)")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
