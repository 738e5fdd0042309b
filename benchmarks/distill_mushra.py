"""Distillation on real ratings: the MUSHRA speech-codec set, 4 folds grouped by utterance; a frozen
aisfx teacher (pooled head) distilled into the conv edge student, against the same student trained
on the human ratings alone, all scored out of fold.

    python benchmarks/distill_mushra.py DATA [--work benchmarks/out/distill-mushra] [--seeds 0,1,2]
        [--students edge,tiny] [--modes embedding,scores,human] [--augment 1]
        [--out benchmarks/results/distill_mushra.json]

DATA is the mushra-speech-codec folder (`ratings.csv` + `audio/`: 128 clips = 16 utterances x
8 codec conditions, mean MUSHRA 0-100, no captions).

Protocol (fixed before looking at figures), every step a `mos` command:
- folds: `mos train --folds 4 --group-by signal --seed S`'s own assignment (mos.trainer.splits.
  make_folds: the 16 utterances shuffled by S, dealt to 4 folds); fold k's held-out clips (4
  utterances, 32 clips) are kept out of everything: no training, no teacher labels, no pool;
- per fold k: a ratings table of the other 12 utterances' 96 clips (absolute audio paths, in the
  work folder) is the data of every command; each run uses `--group-by signal --seed S+k`, which
  makes the same inner validation split (20% of the 12 utterances, for early stopping and the best
  checkpoint) and the same seed as fold k of `mos train --folds 4 --seed S`;
- teacher: `mos train TABLE --audio-encoder aisfx --text-encoder none` (frozen, features cached,
  head auto = pooled; mos train's defaults), then `mos export` (fp32);
- student (mode "embedding", `student-SIZE`): `mos distill TEACHER --data TABLE --augment N
  --student-config SIZE` (SIZE edge, the default, and tiny): the teacher scores and embeds the
  training clips, N degraded copies of each (the unlabelled pool: the other folds' audio is
  already the rated training audio) and the inner validation clips; human weight 0.5, teacher
  weight 0.5, rank agreement 0.5, embedding weight 1; mos distill's defaults otherwise (at most
  30 epochs, patience 6);
- mode "scores" (`scores-only-SIZE`): the same with `--embedding-weight 0` (the teacher's scores only);
- baseline (mode "human", `human-only-SIZE`): the same student size on the human ratings alone,
  `--teacher-weight 0 --agree-weight 0 --embedding-weight 0`, no augmentation (the teacher only
  labels, for mos distill's own table);
- every bundle (teacher, students, baselines) scores fold k's held-out clips with `mos score`;
  the out-of-fold predictions of all 128 clips are pooled per model and scored at clip and
  system level (mos.metrics), with 95% intervals from resampling utterances; the share is the
  student's pooled clip SRCC over the teacher's;
- speed: what each `mos distill` measures at its end: both bundles score the fold's inner
  validation clips end to end (`mos score`'s pipeline, every core, batch 16, 3 interleaved
  repeats, median clips/s); the speed-up reported is the median over folds.
The results file records the commands (paths shown relative to the work folder), the machine with
its load average, per-fold and pooled figures; no absolute paths.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from distill_demo import run  # the same `mos` command runner (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
COLUMNS = "path=path,target:mushra=mean_score,system=system,range:mushra=0:100"
FOLDS = 4
GOAL_SHARE, GOAL_SPEEDUP = 0.95, 15.0
# Run-name prefix of each student mode.
MODES = {"embedding": "student", "scores": "scores-only", "human": "human-only"}


def over_seeds(per_seed: dict, models: list[str]) -> dict:
    """Mean and SD over seeds of each model's pooled clip SRCC (and a student's share of the teacher's)."""
    out = {}
    for m in models:
        srcc = [r["pooled"][m]["utterance"]["srcc"] for r in per_seed.values()]
        entry = {"clip_srcc": srcc, "clip_srcc_mean": round(float(np.mean(srcc)), 4),
                 "clip_srcc_sd": round(float(np.std(srcc, ddof=1)), 4) if len(srcc) > 1 else None}
        if m != "teacher":
            share = [r["summary"][m]["share_of_teacher_clip_srcc"] for r in per_seed.values()]
            entry.update({"share_mean": round(float(np.mean(share)), 4),
                          "share_sd": round(float(np.std(share, ddof=1)), 4) if len(share) > 1 else None})
        out[m] = entry
    return out


def write_table(rows: list[dict[str, str]], data: Path, out: Path) -> None:
    """The rows of ratings.csv with absolute audio paths (the table lives in the work folder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "path": str((data / r["path"]).resolve())})


def read_scores(path: Path, data: Path) -> dict[str, float]:
    """A `mos score` CSV -> {path relative to DATA: predicted mushra}; every row must be ok."""
    out = {}
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["status"] != "ok":
                sys.exit(f"{path}: {r['path']} not scored: {r['error']}")
            out[os.path.relpath(Path(r["path"]).resolve(), data.resolve())] = float(r["mushra"])
    return out


def metrics(pred: list[float], true: list[float], systems: list[str]) -> dict:
    from mos.metrics import evaluate_levels

    return {level: {k: round(v, 4) for k, v in m.as_dict().items()}
            for level, m in evaluate_levels(np.array(pred), np.array(true), systems).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the mushra-speech-codec folder (ratings.csv and audio/)")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/distill-mushra"))
    ap.add_argument("--seeds", default="0", help="e.g. 0,1,2")
    ap.add_argument("--students", default="edge,tiny", help="student sizes, e.g. edge or edge,tiny")
    ap.add_argument("--modes", default="embedding,scores,human", help="which students: embedding, scores, human")
    ap.add_argument("--augment", type=int, default=1)
    ap.add_argument("--student-rate", type=int, default=None, help="mos distill --student-rate (default: 16 kHz)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distill_mushra.json"))
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from mos.bench.machine import load_average, machine_info
    from mos.data.table import parse_column_spec
    from mos.metrics import bootstrap_levels
    from mos.trainer.splits import make_folds

    data = args.data.resolve()
    table = data / "ratings.csv"
    if not table.is_file():
        sys.exit(f"{args.data}: no ratings.csv here (expected the mushra-speech-codec folder)")
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    truth = {r["path"]: float(r["mean_score"]) for r in rows}
    system = {r["path"]: r["system"] for r in rows}
    signal = {r["path"]: r["signal"] for r in rows}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    sizes = [s.strip() for s in args.students.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        sys.exit(f"--modes {args.modes}: expected some of {', '.join(MODES)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    machine = machine_info()
    commands: dict[str, str] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def shown(c: str) -> str:
        return c.replace(str(work) + os.sep, "").replace(str(data), args.data.name)

    def step(key: str, cmd: list[str], done: Path) -> None:
        """Run `cmd` unless `done` exists (a rerun continues where an interrupted one stopped)."""
        commands[key] = shown(" ".join(["mos", *cmd]))
        if not done.exists():
            seconds[key] = run(cmd, log)

    per_seed = {}
    for seed in seeds:
        folds = make_folds(table, parse_column_spec(COLUMNS), FOLDS, seed, "signal")
        fold_of = {folds.groups[it.id]: f for it, f in zip(folds.manifest.items, folds.fold)}
        models = ["teacher", *[f"{MODES[m]}-{s}" for m in modes for s in sizes]]
        pred: dict[str, dict[str, float]] = {m: {} for m in models}
        per_fold = []
        for k in range(FOLDS):
            fdir = work / f"seed{seed}" / f"fold{k + 1}"
            runs = fdir / "runs"
            train_csv, held_csv = fdir / "train.csv", fdir / "heldout.csv"
            write_table([r for r in rows if fold_of[r["signal"]] != k], data, train_csv)
            write_table([r for r in rows if fold_of[r["signal"]] == k], data, held_csv)
            tag = f"seed{seed}/fold{k + 1}"
            split = ["--columns", COLUMNS, "--group-by", "signal", "--seed", str(seed + k)]
            teacher = runs / "teacher"
            step(f"{tag}/teacher", ["train", str(train_csv), *split, "--audio-encoder", "aisfx", "--text-encoder", "none",
                                    "--device", "cpu", "--name", "teacher", "--runs-dir", str(runs), "--overwrite"],
                 teacher / "best_metrics.json")
            step(f"{tag}/export", ["export", str(teacher)], teacher / "bundle" / "mos.json")
            common = [str(teacher), "--data", str(train_csv), *split, "--runs-dir", str(runs), "--device", "cpu",
                      "--teacher-device", "cpu", "--teacher-cache", str(work / "teacher-cache"), "--quiet", "--overwrite",
                      *(["--student-rate", str(args.student_rate)] if args.student_rate else [])]
            bundles = {"teacher": teacher / "bundle"}
            for mode in modes:
                for size in sizes:
                    name = f"{MODES[mode]}-{size}"
                    extra = {"embedding": ["--augment", str(args.augment)],
                             "scores": ["--augment", str(args.augment), "--embedding-weight", "0"],
                             "human": ["--teacher-weight", "0", "--agree-weight", "0", "--embedding-weight", "0"]}[mode]
                    step(f"{tag}/{name}", ["distill", *common, "--name", name, "--student-config", size, *extra],
                         runs / name / "compare")
                    bundles[name] = runs / name / "bundle"
            fold_info: dict = {"fold": k + 1, "held_out_signals": sorted({r["signal"] for r in rows if fold_of[r["signal"]] == k}),
                               "models": {}}
            for name, bundle in bundles.items():
                out = fdir / "scores" / f"{name}.csv"
                step(f"{tag}/score-{name}", ["score", str(held_csv), "--columns", COLUMNS, "--bundle", str(bundle),
                                             "--out", str(out), "--device", "cpu", "--quiet"], out)
                got = read_scores(out, data)
                pred[name].update(got)
                ids = sorted(got)
                fold_info["models"][name] = {"held_out": metrics([got[i] for i in ids], [truth[i] for i in ids],
                                                                 [system[i] for i in ids])}
            for name in bundles:
                if name == "teacher":
                    continue
                d = json.loads((runs / name / "distill.json").read_text(encoding="utf-8"))
                fold_info["models"][name].update({
                    "inner_validation_srcc_share": d["srcc_share"], "speedup": d["speedup"],
                    "teacher_clips_per_s": d["teacher"]["clips_per_s"], "student_clips_per_s": d["student"]["clips_per_s"],
                    "speed_clips": d["workload"]["clips"], "best_epoch": d["student"]["best_epoch"],
                    "parameters": d["student"]["parameters"], "training_clips": d["training_clips"]})
            per_fold.append(fold_info)
            print(f"seed {seed} fold {k + 1}: " + ", ".join(
                f"{n} SRCC {m['held_out']['utterance']['srcc']:.3f}" for n, m in fold_info["models"].items()), flush=True)

        ids = sorted(truth)
        missing = [i for i in ids if any(i not in pred[m] for m in models)]
        if missing:
            sys.exit(f"seed {seed}: {len(missing)} clip(s) have no out-of-fold prediction, e.g. {missing[0]}")
        true = [truth[i] for i in ids]
        systems = [system[i] for i in ids]
        pooled, intervals = {}, {}
        for m in models:
            p = [pred[m][i] for i in ids]
            pooled[m] = metrics(p, true, systems)
            ci = bootstrap_levels(np.array(p), np.array(true), [signal[i] for i in ids], systems, seed=seed)
            intervals[m] = {level: [round(x, 3) for x in ci[level]["srcc"]] for level in ci}
        t_srcc = pooled["teacher"]["utterance"]["srcc"]
        summary = {"teacher": {"clip_srcc": t_srcc, "per_fold_mean_clip_srcc": round(float(np.mean(
            [f["models"]["teacher"]["held_out"]["utterance"]["srcc"] for f in per_fold])), 4)}}
        for m in models[1:]:
            ups = [f["models"][m]["speedup"] for f in per_fold]
            summary[m] = {"clip_srcc": pooled[m]["utterance"]["srcc"],
                          "share_of_teacher_clip_srcc": round(pooled[m]["utterance"]["srcc"] / t_srcc, 4) if t_srcc > 0 else None,
                          "speedup_median_over_folds": round(float(np.median(ups)), 2),
                          "per_fold_mean_clip_srcc": round(float(np.mean(
                              [f["models"][m]["held_out"]["utterance"]["srcc"] for f in per_fold])), 4), "speedup_per_fold": ups,
                          "goal_met": bool(t_srcc > 0 and pooled[m]["utterance"]["srcc"] >= GOAL_SHARE * t_srcc
                                           and np.median(ups) >= GOAL_SPEEDUP)}
        per_seed[seed] = {"folds": folds.description.replace(str(table), f"{args.data.name}/ratings.csv"),
                          "pooled": pooled, "pooled_clip_and_system_srcc_95": intervals, "summary": summary,
                          "per_fold": per_fold,
                          "out_of_fold_predictions": {m: {i: round(pred[m][i], 3) for i in ids} for m in models}}

    results = {
        "what": "mos distill on the MUSHRA speech-codec set, 4 folds by utterance: aisfx teacher -> conv student, "
                "vs the same student on human ratings only, all out of fold",
        "data": args.data.name,
        "protocol": (__doc__ or "").split("Protocol (fixed before looking at figures), every step a `mos` command:\n")[1]
        .split("The results file")[0].strip(),
        "goal": f"student keeps >= {GOAL_SHARE:.0%} of the teacher's SRCC at >= {GOAL_SPEEDUP:g}x its speed",
        "over_seeds": over_seeds(per_seed, models),
        "machine": {**machine, "load_average_end": load_average()},
        "seeds": seeds, "students": sizes, "modes": modes, "augment": args.augment, "student_rate": args.student_rate,
        "commands": commands,
        "seconds": {**seconds, "total_this_invocation": round(time.perf_counter() - started, 1)},
        "per_seed": per_seed,
    }
    text = json.dumps(results, indent=2)
    for local in {str(work), str(data), str(REPO), str(Path.cwd())}:
        if local in text:
            sys.exit(f"refusing to write {args.out}: it would record the local path {local}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    for seed, r in per_seed.items():
        print(f"seed {seed}: teacher pooled clip SRCC {r['pooled']['teacher']['utterance']['srcc']:.3f} "
              f"(per-fold mean {r['summary']['teacher']['per_fold_mean_clip_srcc']:.3f})")
        for m, s in list(r["summary"].items())[1:]:
            print(f"  {m}: clip SRCC {s['clip_srcc']:.3f}, share {s['share_of_teacher_clip_srcc']}, "
                  f"per-fold mean {s['per_fold_mean_clip_srcc']:.3f}, speed-up {s['speedup_median_over_folds']}x (per fold {s['speedup_per_fold']}), goal met {s['goal_met']}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
