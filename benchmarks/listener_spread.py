"""Listener-aware training, measured: SRCC with and without `--distribution` and `--listener-norm`,
and how well the predicted listener spread covers single listeners' ratings.

    python benchmarks/listener_spread.py [--mushra DATA] [--demo] [--seeds 0,1,2] [--runs-dir runs]

- `--demo`: the built-in demo set (its simulated listeners: each rates the true value + N(0, 0.8),
  no per-listener bias), the default edge model with captions, trained as `mos train` does
  (30 epochs at most, early stopping on validation SRCC); validation SRCC of the `score` target
  and calibration against the four ratings of each clip (`meta_data/validation.csv`).
  Configurations: plain, `--distribution 20`, `--listener-norm on`, both.
- `--mushra DATA`: the MUSHRA speech-codec set (128 clips, 8-11 listeners each, no listener ids,
  so `--listener-norm` does not apply), 4-fold cross-validation grouped by utterance (`signal`),
  frozen aisfx with the pooled head (the best pretrained encoder there), audio only; pooled
  out-of-fold clip SRCC and calibration against each clip's `ratings` list, per seed.
  Configurations: plain, `--distribution 20`.

Coverage: the share of single listeners' ratings inside the predicted central 50% / 90%
interval of Normal(score, spread); nominal 0.5 / 0.9. Results: benchmarks/results/listener_spread.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLUMNS = "path=path,target:mushra=mean_score,system=system,range:mushra=0:100,ratings:mushra=ratings"


def quiet_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), width=200)


def demo_runs(runs_dir: Path, seeds: list[int]) -> list[dict]:
    from mos.data.demo import build_demo
    from mos.evaluate import evaluate_summary
    from mos.trainer.config import TrainConfig
    from mos.trainer.run import run_training

    data = build_demo(REPO / "data" / "demo")
    truth = data / "meta_data" / "validation_average.csv"  # its per-listener sibling validation.csv comes along
    out = []
    for seed in seeds:
        for distribution in (0, 20):
            for norm in ("off", "on"):
                name = f"demo-d{distribution}-{norm}-s{seed}"
                cfg = TrainConfig(data=str(data), name=name, runs_dir=str(runs_dir), seed=seed, overwrite=True,
                                  distribution_bins=distribution, listener_norm=norm)
                t0 = time.perf_counter()
                result = run_training(cfg, quiet_console())
                seconds = time.perf_counter() - t0
                summary = evaluate_summary(result.run_dir / "val_predictions.csv", truth)
                best = json.loads((result.run_dir / "best_metrics.json").read_text())
                row = {"data": "demo", "seed": seed, "distribution": distribution, "listener_norm": norm,
                       "validation_srcc": best["levels"]["score"]["utterance"]["srcc"],
                       "validation_lcc": best["levels"]["score"]["utterance"]["lcc"],
                       "best_epoch": best["epoch"], "seconds": round(seconds, 1)}
                if "score" in summary.calibration:
                    row["calibration"] = summary.calibration["score"].as_dict()
                print(json.dumps(row), flush=True)
                out.append(row)
    return out


def mushra_runs(data: Path, runs_dir: Path, seeds: list[int]) -> list[dict]:
    from mos.evaluate import evaluate_summary
    from mos.data.table import parse_column_spec
    from mos.trainer.config import TrainConfig
    from mos.trainer.run import run_training

    table = data / "ratings.csv"
    out = []
    for seed in seeds:
        for distribution in (0, 20):
            name = f"mushra-d{distribution}-s{seed}"
            cfg = TrainConfig(data=str(table), columns=COLUMNS, group_by="signal", folds=4, text_encoder="none",
                              audio_encoder="aisfx", name=name, runs_dir=str(runs_dir), seed=seed, overwrite=True,
                              distribution_bins=distribution)
            t0 = time.perf_counter()
            run_training(cfg, quiet_console())
            seconds = time.perf_counter() - t0
            summary = evaluate_summary(runs_dir / name / "oof_predictions.csv", table, parse_column_spec(COLUMNS))
            row = {"data": "mushra", "seed": seed, "distribution": distribution, "listener_norm": "n/a (no listener ids)",
                   "oof_clip_srcc": summary.results["mushra"]["utterance"].srcc,
                   "oof_system_srcc": summary.results["mushra"]["system"].srcc, "seconds": round(seconds, 1)}
            if "mushra" in summary.calibration:
                row["calibration"] = summary.calibration["mushra"].as_dict()
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mushra", type=Path, default=None, help="the mushra-speech-codec folder")
    p.add_argument("--demo", action="store_true", help="measure on the built-in demo set")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--demo-seeds", default=None, help="seeds for the demo set (default: --seeds)")
    p.add_argument("--runs-dir", type=Path, default=REPO / "benchmarks" / "out" / "listener-spread")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "listener_spread.json")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    demo_seeds = [int(s) for s in args.demo_seeds.split(",")] if args.demo_seeds else seeds
    rows = []
    if args.demo:
        rows += demo_runs(args.runs_dir, demo_seeds)
    if args.mushra is not None:
        rows += mushra_runs(args.mushra, args.runs_dir, seeds)
    if not rows:
        p.error("nothing to measure: give --demo and/or --mushra DATA")
    doc = {"benchmark": "listener_spread", "command": "python benchmarks/listener_spread.py " + " ".join(
               a if not a.startswith("/") else Path(a).name for a in os.sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
           "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
