"""Cold start: `mos score` on one clip, from process start to exit, in fresh processes.

    python benchmarks/cold_start.py BUNDLE [--repeats 7] [--checkout DIR ...] [--out FILE]

For each checkout (default: this one; give others, e.g. a `git worktree` of an older commit, to
compare), runs `python -m mos score CLIP --bundle BUNDLE --out ... --quiet` `--repeats` times for
a 10 s clip at 16 kHz (no resampling) and one at 44.1 kHz (resampled to the bundle's rate), in
turn, and reports the median wall time and the peak resident memory of the process (the
`ru_maxrss` that os.wait4 gives for that process), plus `python -X importtime`'s total for `mos.cli`. The load
average is recorded with the figures: on a shared machine, compare only figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def write_clip(path: Path, rate: int, seconds: float = 10.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, x.astype(np.float32), rate)
    return path


CAPTION = "a dog barks twice near a busy road while cars pass by in the rain"


def one_run(checkout: Path, clip: Path, bundle: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `mos score` process. The clip's ~12-word caption is
    in captions.csv beside it (an audio-only bundle notes that it does not read it)."""
    env = child_env(checkout)
    captions = clip.parent / "captions.csv"
    if not captions.exists():
        captions.write_text("wav_file_name,text\n" + "".join(f"{p.name},{CAPTION}\n" for p in clip.parent.glob("*.wav")))
    cmd = [sys.executable, "-m", "mos", "score", str(clip), "--bundle", str(bundle), "--captions", str(captions),
           "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=checkout)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
    wall = time.perf_counter() - t0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {stderr.strip()[-400:]}")
    return wall, usage.ru_maxrss / 1024.0


def child_env(checkout: Path) -> dict[str, str]:
    """The checkout first on the path; bytecode caches allowed (PYTHONDONTWRITEBYTECODE dropped),
    as an installed package has them: the warm-up run writes them, the timed runs read them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(checkout)
    return env


def import_seconds(checkout: Path) -> float:
    env = child_env(checkout)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mos.cli"], env=env,
                          capture_output=True, text=True, cwd=checkout)
    last = [line for line in proc.stderr.splitlines() if re.search(r"\|\s*mos\.cli$", line)]
    return int(last[-1].split("|")[1]) / 1e6 if last else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--checkout", type=Path, action="append", default=None,
                   help="a checkout to measure (repeatable; default: this one)")
    p.add_argument("--label", action="append", default=None, help="a name for each --checkout")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cold_start.json")
    args = p.parse_args()
    checkouts = args.checkout or [REPO]
    labels = args.label or [c.name for c in checkouts]
    work = Path(tempfile.mkdtemp(prefix="mos-cold-"))
    clips = {"16 kHz": write_clip(work / "clip16k.wav", 16000), "44.1 kHz": write_clip(work / "clip44k.wav", 44100)}
    load_start = os.getloadavg()
    for label, checkout in zip(labels, checkouts):  # warm-ups: file cache, bytecode caches
        for clip in clips.values():
            one_run(checkout, clip, args.bundle, work / "warm.csv")
    results: dict[str, dict] = {label: {"import_mos_cli_s": import_seconds(c)} for label, c in zip(labels, checkouts)}
    walls: dict[tuple[str, str], list[float]] = {}
    rss: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so load changes hit every configuration alike
        for label, checkout in zip(labels, checkouts):
            for kind, clip in clips.items():
                wall, peak = one_run(checkout, clip, args.bundle, work / "out.csv")
                walls.setdefault((label, kind), []).append(wall)
                rss.setdefault((label, kind), []).append(peak)
    for (label, kind), values in walls.items():
        results[label][kind] = {"median_wall_s": round(statistics.median(values), 3),
                                "min_wall_s": round(min(values), 3),
                                "peak_rss_mb": round(statistics.median(rss[(label, kind)]), 1)}
    doc = {"benchmark": "cold_start", "bundle": args.bundle.name, "repeats": args.repeats,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "loadavg_start": load_start, "loadavg_end": os.getloadavg()}, "results": results,
           "note": "wall: median (and min) of the repeats; peak RSS: the median process's ru_maxrss (os.wait4)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
