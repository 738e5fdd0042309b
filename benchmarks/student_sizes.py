"""End-to-end speed of each `mos distill --student-config` size on 10 s clips, against DNSMOS and the
teacher in the same runs, so that a user can trade speed for accuracy knowingly.

    python benchmarks/student_sizes.py TEACHER [--work benchmarks/out/sizes] [--sizes tiny,small,edge,large]
        [--clips 64] [--out benchmarks/results/student_sizes.json]

TEACHER is an exported bundle of a model trained on the demo set (the one `distill_demo.py` makes:
benchmarks/out/distill/runs/teacher). Protocol, every step a `mos` command:
- per size, `mos distill TEACHER --student-config SIZE --epochs 1` on the demo set (speed does not
  depend on the weights; the teacher's work comes from its cache after the first size);
- per size, `mos bench --bundle STUDENT --clips N --batch-sizes 16 --no-eager`: synthetic 10 s
  clips, each with its own caption, scored end to end (decode, windows, captions, model) fp32 and
  int8 over the thread/stream grid, DNSMOS on the same clips in the same run; then the teacher
  bundle the same way. The fp32 figure reported is the best cell of the grid (every core used),
  and the ratios are to DNSMOS in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from distill_demo import rel, run  # the same `mos` command runner (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def best(bench: dict, variant: str) -> float:
    """The highest median clips/s of `variant` over the bench's grid."""
    return max(c["clips_per_s"]["median"] for c in bench["end_to_end"] if c["variant"] == variant)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", type=Path)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/sizes"))
    ap.add_argument("--sizes", default="tiny,small,edge,large")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/student_sizes.json"))
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from mos.bench.machine import load_average, machine_info
    from mos.data.demo import build_demo

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data = build_demo(work / "data")
    runs = work / "runs"
    machine = machine_info()
    commands: dict[str, str] = {}
    rows: dict[str, dict] = {}

    def step(name: str, cmd: list[str]) -> None:
        commands[name] = " ".join(["mos", *[rel(Path(c)) if Path(c).exists() else c for c in cmd]])
        run(cmd, log)

    bundles = {}
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        step(f"distill-{size}", ["distill", str(args.teacher), "--data", str(data), "--runs-dir", str(runs),
                                 "--name", size, "--student-config", size, "--epochs", "1", "--speed-repeats", "1",
                                 "--teacher-cache", str(work / "teacher-cache"), "--quiet", "--overwrite"])
        bundles[size] = runs / size / "bundle"
    bundles["teacher"] = args.teacher / "bundle" if (args.teacher / "bundle").is_dir() else args.teacher
    for name, bundle in bundles.items():
        out = work / f"bench-{name}.json"
        step(f"bench-{name}", ["bench", "--bundle", str(bundle), "--clips", str(args.clips), "--batch-sizes", "16",
                               "--no-eager", "--out", str(out)])
        b = json.loads(out.read_text())
        peer = b.get("peer") or {}
        report = runs / name / "distill.json"
        params = json.loads(report.read_text())["student"]["parameters"] if report.is_file() else None
        rows[name] = {"fp32_clips_per_s": best(b, "fp32"),
                      "int8_clips_per_s": best(b, "int8") if any(c["variant"] == "int8" for c in b["end_to_end"]) else None,
                      "dnsmos_clips_per_s": peer.get("clips_per_s"),
                      "fp32_over_dnsmos": round(best(b, "fp32") / peer["clips_per_s"], 1) if peer.get("clips_per_s") else None,
                      "audio_onnx_mb": round((bundle / "audio.onnx").stat().st_size / 1e6, 2), "parameters": params,
                      "workload": b.get("workload")}
        print(f"{name}: fp32 {rows[name]['fp32_clips_per_s']} clips/s, DNSMOS {rows[name]['dnsmos_clips_per_s']} "
              f"({rows[name]['fp32_over_dnsmos']}x)", flush=True)
    teacher_fp32 = rows["teacher"]["fp32_clips_per_s"]
    for name, r in rows.items():
        r["over_teacher"] = round(r["fp32_clips_per_s"] / teacher_fp32, 1)
    results = {"what": "end-to-end speed of the mos distill student sizes on 10 s clips, vs DNSMOS and the teacher",
               "protocol": (__doc__ or "").split("Protocol, every step a `mos` command:\n")[1].strip(),
               "machine": {**machine, "load_average_end": load_average()}, "commands": commands, "sizes": rows}
    text = json.dumps(results, indent=2)
    for local in {str(work.resolve()), str(REPO), str(Path.cwd())}:
        text = text.replace(local + os.sep, "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
