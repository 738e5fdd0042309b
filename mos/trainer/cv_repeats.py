"""Repeated cross-validation (`mos train --folds K --repeats R`): where each repeat goes, its
seed, and the summary of the R repeats' figures.

One K-fold cross-validation depends on how the clips (or groups) happen to be dealt to the folds;
repeating it with other fold assignments shows how much. Repeat r (1-based) uses seed
`seed + (r - 1) * REPEAT_SEED_STEP` for everything seeded in it: the fold assignment, the inner
validation splits, the models' initialisation and the bootstrap; where that seed would deal the
same groups together as an earlier repeat (few groups, few ways to deal them), the next seed up
that does not is used (mos.trainer.splits.make_repeated_folds; each repeat's seed is recorded).
Repeat 1 is therefore the same cross-validation as a run without --repeats. With R > 1 repeat r writes `<run>/repeats/r<r>/`
(laid out as a single cross-validation run folder), and `<run>/cv.json` holds:

- `per_repeat`: each repeat's pooled out-of-fold figures (`levels`, target -> level -> metrics)
  with its seed, split and 95% intervals;
- `levels`: per target, level and metric, the MEAN over the R repeats of those pooled figures
  (`n` as in each repeat); `levels_sd`: their sample standard deviation (ddof 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mos.trainer.config import TrainConfig

REPEAT_SEED_STEP = 1000  # repeat r's seed: seed + (r - 1) * REPEAT_SEED_STEP
METRICS = ("mse", "lcc", "srcc", "ktau")


def repeat_seed(seed: int, r: int) -> int:
    """The seed of repeat `r` (1-based): repeat 1 keeps the run's seed."""
    return seed + (r - 1) * REPEAT_SEED_STEP


def repeat_folder(run_dir: Path, r: int, repeats: int) -> Path:
    """Where repeat `r` writes: the run folder itself when there is one repeat."""
    return run_dir if repeats == 1 else run_dir / "repeats" / f"r{r}"


def repeats_description(seed: int, seeds: list[int]) -> str:
    return (f"{len(seeds)} different fold assignments, repeat r seeded {seed} + (r-1)*{REPEAT_SEED_STEP} "
            f"or the next seed up that deals other folds (seeds {', '.join(map(str, seeds))}): folds, inner validation "
            f"splits and initialisation all differ between repeats")


def repeat_line(report: dict[str, Any]) -> str:
    """One repeat's pooled out-of-fold SRCC and LCC per target and level, in a line."""
    return " | ".join(f"{name} [{level.upper()}] SRCC={m['srcc']:.4f} LCC={m['lcc']:.4f}"
                      for name, levels in report["levels"].items() for level, m in levels.items())


def summarise_repeats(cfg: TrainConfig, reports: list[dict[str, Any]], folders: list[Path], run_dir: Path,
                      selection: str) -> dict[str, Any]:
    """The run's cv.json with repeats: each repeat's pooled figures, their mean (`levels`) and
    sample SD (`levels_sd`) per target, level and metric."""
    first = reports[0]["levels"]
    levels: dict[str, dict[str, dict[str, float]]] = {}
    levels_sd: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_level in first.items():
        levels[name], levels_sd[name] = {}, {}
        for level, m in by_level.items():
            values = {key: np.array([rep["levels"][name][level][key] for rep in reports], dtype=np.float64)
                      for key in METRICS}
            levels[name][level] = {**{key: float(v.mean()) for key, v in values.items()}, "n": m["n"]}
            levels_sd[name][level] = {key: float(v.std(ddof=1)) for key, v in values.items()}
    per_repeat = [{"repeat": r, "seed": rep["bootstrap"]["seed"], "folder": folder.relative_to(run_dir).as_posix(),
                   "split": rep["split"], "levels": rep["levels"], "intervals_95": rep["intervals_95"],
                   "per_fold_mean_utterance": rep["per_fold_mean_utterance"]}
                  for r, (rep, folder) in enumerate(zip(reports, folders), start=1)]
    return {"folds": cfg.folds, "repeats": len(reports), "group_by": cfg.group_by,
            "split": repeats_description(cfg.seed, [rep["bootstrap"]["seed"] for rep in reports]),
            "selection": selection,
            "clips": reports[0]["clips"], "levels": levels, "levels_sd": levels_sd,
            "levels_are": f"the mean over the {len(reports)} repeats of each repeat's pooled out-of-fold figures "
                           f"(per_repeat[].levels); levels_sd: their sample standard deviation (ddof 1)",
            "per_repeat": per_repeat}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The console's closing lines: per target and level, every metric as mean +- SD over the repeats."""
    lines = [f"OVER {summary['repeats']} REPEATS ({summary['folds']} folds each; pooled out-of-fold figures, "
             f"mean +- SD over {summary['repeats']} repeats):"]
    for name, by_level in summary["levels"].items():
        for level, m in by_level.items():
            sd = summary["levels_sd"][name][level]
            lines.append(f"  {name} [{level.upper()}] "
                         + " ".join(f"{key.upper()}={m[key]:.4f} +- {sd[key]:.4f}" for key in METRICS))
    return lines
