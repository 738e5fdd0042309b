"""K-fold cross-validation (`mos train --folds K [--group-by COLUMN]`).

Each fold trains a model in `<run>/folds/fold<k>/` (a full run folder) on the other folds. Early
stopping and the best checkpoint are chosen on an inner validation split of those training
folds (split by the same groups); the held-out fold is scored once, by the chosen checkpoint,
the way `mos score` scores. The pooled out-of-fold predictions give clip- and system-level
metrics with bootstrap intervals over groups (whole groups resampled, never single clips).

Outputs in the run folder: `oof_predictions.csv` (id, predictions, true values, system, group,
fold), `cv.json` (`levels`: target -> level -> metrics, as `best_metrics.json`, plus intervals
and per-fold figures), `scatter.png`, and each fold's own run folder. A fold is finished when
its `heldout.json` exists; `--resume` skips finished folds and resumes an interrupted one.
With `--repeats R` (R > 1) the whole cross-validation runs R times, each repeat with its own fold
assignment and seed in `<run>/repeats/r<r>/` (laid out as above), and `<run>/cv.json` holds each
repeat's pooled figures with their mean and SD (mos.trainer.cv_repeats); a repeat is finished when
its own `cv.json` exists.
With --listener-norm each fold's training clips (never its inner validation or held-out clips)
are standardised on their own, and the fold folder gets its `listeners.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from mos.data.table import ColumnMap
from mos.metrics import bootstrap_levels
from mos.files import write_text_atomic
from mos.trainer.config import TrainConfig
from mos.trainer.listener_norm import clean_training, listener_norm_active, write_report
from mos.trainer.loop import Trainer
from mos.trainer.plots import plot_scatter
from mos.trainer.run_folder import clear_run_folder, write_predictions
from mos.trainer.cv_repeats import (repeat_folder, repeat_line, repeat_seed, repeats_description, summarise_repeats,
                                    summary_lines)
from mos.trainer.splits import Folds, fold_splits, make_repeated_folds
from mos.trainer.validation import level_metrics

RESAMPLES = 2000


@dataclass
class CvResult:
    run_dir: Path
    levels: dict[str, dict[str, dict[str, float]]]  # target -> level -> metrics (out of fold; with repeats their mean)
    intervals: dict[str, dict[str, dict[str, list[float]]]]  # target -> level -> metric -> [low, high]; empty with repeats
    per_fold: list[dict[str, Any]]  # empty with repeats (each repeat's cv.json has its own)
    levels_sd: dict[str, dict[str, dict[str, float]]] | None = None  # with repeats: SD over them


def _selection(cfg: TrainConfig, unit: str) -> str:
    return (f"inner validation: in each fold, early stopping (patience {cfg.patience}, at most {cfg.epochs} epochs) "
            f"and the best checkpoint are chosen on {cfg.val_fraction:.0%} of the training folds' {unit}, held out "
            f"from its training; the held-out fold is scored once, by that checkpoint")


def _fmt(m: dict[str, float], ci: dict[str, list[float]]) -> str:
    return " ".join(f"{k.upper()}={m[k]:.4f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" for k in ("mse", "lcc", "srcc", "ktau"))


def run_cross_validation(cfg: TrainConfig, console: Console, data: Path, columns: ColumnMap | None,
                         run_dir: Path, sources: dict[str, str]) -> CvResult:
    """Cross-validate into `run_dir`; with cfg.repeats > 1, once per repeat into
    `run_dir/repeats/r<r>/` with its own folds and seed (mos.trainer.cv_repeats), then the summary."""
    unit = f"{cfg.group_by} values" if cfg.group_by else "clips"
    selection = _selection(cfg, unit)
    dealt = make_repeated_folds(data, columns, cfg.folds, [repeat_seed(cfg.seed, r) for r in range(1, cfg.repeats + 1)],
                                cfg.group_by)
    plan = [(r, folds, replace(cfg, seed=folds.seed), repeat_folder(run_dir, r, cfg.repeats))
            for r, folds in enumerate(dealt, start=1)]
    first = dealt[0]
    how = repeats_description(cfg.seed, [f.seed for f in dealt]) if cfg.repeats > 1 else first.description
    console.print(f"cross-validation{f', {cfg.repeats} repeats' if cfg.repeats > 1 else ''}: {how}", markup=False)
    console.print(f"model choice: {selection}", markup=False)
    listener_norm = listener_norm_active(cfg, first.manifest, console)
    clear_run_folder(run_dir, cfg, console)
    run_dir.mkdir(parents=True, exist_ok=True)
    cv_info = {"folds": cfg.folds, "split": how, "selection": selection}
    if cfg.repeats > 1:
        cv_info = {"folds": cfg.folds, "repeats": cfg.repeats, "seeds": [f.seed for f in dealt], "split": how,
                   "selection": selection}
    write_text_atomic(run_dir / "config.json", json.dumps({"train": cfg.to_dict(), "cv": cv_info, **sources}, indent=2))

    reports = []
    for r, folds, repeat_cfg, folder in plan:
        prefix = f"repeat {r}/{cfg.repeats}: " if cfg.repeats > 1 else ""
        finished = folder / "cv.json"
        if cfg.repeats > 1 and finished.is_file():
            report = json.loads(finished.read_text(encoding="utf-8"))
            console.print(f"{prefix}finished earlier ({finished})", markup=False)
        else:
            if cfg.repeats > 1:
                console.print(f"{prefix}{folds.description}", markup=False)
            report = _cross_validate(repeat_cfg, console, folds, folder, sources, selection, listener_norm, prefix)
        reports.append(report)
        if cfg.repeats > 1:
            console.print(f"{prefix}{repeat_line(report)}", markup=False)
    if cfg.repeats == 1:
        report = reports[0]
        return CvResult(run_dir, report["levels"], report["intervals_95"], report["per_fold"])
    summary = summarise_repeats(cfg, reports, [folder for *_, folder in plan], run_dir, selection)
    write_text_atomic(run_dir / "cv.json", json.dumps(summary, indent=2))
    for line in summary_lines(summary):
        console.print(line, markup=False)
    console.print(f"cross-validation: {run_dir / 'cv.json'} (each repeat's own: {run_dir / 'repeats'})", markup=False)
    return CvResult(run_dir, summary["levels"], {}, [], summary["levels_sd"])


def _cross_validate(cfg: TrainConfig, console: Console, folds: Folds, run_dir: Path, sources: dict[str, str],
                    selection: str, listener_norm: bool, prefix: str) -> dict[str, Any]:
    """One K-fold cross-validation into `run_dir` (folds/, oof_predictions.csv, cv.json,
    scatter.png); its cv.json report. `prefix` starts each console line (the repeat)."""
    unit = f"{cfg.group_by} values" if cfg.group_by else "clips"
    run_dir.mkdir(parents=True, exist_ok=True)
    items = folds.manifest.items
    names = folds.manifest.target_names
    position = {it.id: i for i, it in enumerate(items)}
    pred = np.full((len(items), len(names)), np.nan)
    spread = np.full((len(items), len(names)), np.nan) if cfg.distribution_bins else None
    true = np.array([[it.targets[n] for n in names] for it in items], dtype=np.float64)
    per_fold: list[dict[str, Any]] = []
    for k in range(cfg.folds):
        fold_dir = run_dir / "folds" / f"fold{k + 1}"
        done = fold_dir / "heldout.json"
        splits, held = fold_splits(folds, k, cfg.val_fraction, cfg.seed)
        if done.is_file():
            info = json.loads(done.read_text(encoding="utf-8"))
            console.print(f"{prefix}fold {k + 1}/{cfg.folds}: finished earlier ({done})", markup=False)
        else:
            fold_cfg = replace(cfg, name=f"fold{k + 1}", seed=cfg.seed + k, folds=0, repeats=1, overwrite=False,
                               resume=cfg.resume and (fold_dir / "checkpoints" / "last.pt").is_file())
            log_path = fold_dir / "train.log"
            fold_dir.mkdir(parents=True, exist_ok=True)
            with log_path.open("a", encoding="utf-8") as log:
                fold_console = Console(file=log, width=200, highlight=False, soft_wrap=True)
                if listener_norm:
                    splits, report = clean_training(cfg, splits)
                    write_report(fold_dir, report, splits.train.source)
                    fold_console.print(report.line(), markup=False)
                    console.print(f"{prefix}fold {k + 1}/{cfg.folds}: {report.line()}", markup=False)
                trainer = Trainer(fold_cfg, splits, fold_console, fold_dir, sources)
                result = trainer.fit()
                held_pred, _, held_spread = trainer.predict_with_spread(held)
            held_true = np.array([[it.targets[n] for n in names] for it in held.items], dtype=np.float64)
            info = {
                "fold": k + 1, "split": splits.description,
                "held_out_groups": sorted({folds.groups[it.id] for it in held.items}),
                "n_train": len(splits.train), "n_inner_validation": len(splits.validation), "n_held_out": len(held),
                "best_epoch": result.best_epoch, "stopped": result.stopped,
                "inner_validation_mean_srcc": result.best_srcc,
                "levels": level_metrics(held_pred, held_true, names, held.items),
                "ids": [it.id for it in held.items], "pred": held_pred.tolist(),
                **({"spread": held_spread.tolist()} if held_spread is not None else {}),
            }
            write_predictions(fold_dir / "heldout_predictions.csv", held.items, names, held_pred, held_true,
                              folds.groups if cfg.group_by else None, spread=held_spread)
            write_text_atomic(done, json.dumps(info, indent=2))
        for i, row in zip(info["ids"], info["pred"]):
            pred[position[i]] = row
        if spread is not None:
            for i, row in zip(info["ids"], info["spread"]):
                spread[position[i]] = row
        figures = " | ".join(f"{n} SRCC={info['levels'][n]['utterance']['srcc']:.3f} "
                             f"LCC={info['levels'][n]['utterance']['lcc']:.3f}" for n in names)
        console.print(f"{prefix}fold {k + 1}/{cfg.folds}: {info['n_train']} train / {info['n_inner_validation']} inner-validation / "
                      f"{info['n_held_out']} held-out clips; best epoch {info['best_epoch']} ({info['stopped']}); "
                      f"held out: {figures} (log: {fold_dir / 'train.log'})", markup=False)
        per_fold.append({key: v for key, v in info.items() if key not in ("ids", "pred")})

    write_predictions(run_dir / "oof_predictions.csv", items, names, pred, true,
                      folds.groups if cfg.group_by else None, folds.fold, spread=spread)
    levels = level_metrics(pred, true, names, items)
    group_list = [folds.groups[it.id] for it in items]
    systems = [it.system for it in items]
    intervals = {n: bootstrap_levels(pred[:, j], true[:, j], group_list, systems, RESAMPLES, cfg.seed)
                 for j, n in enumerate(names)}
    n_groups = len(set(group_list))
    bootstrap = {"resamples": RESAMPLES, "unit": cfg.group_by or "clip", "groups": n_groups, "seed": cfg.seed,
                 "confidence": 0.95}
    # Each fold's held-out figures, averaged (the pooled figures above also pay for differences
    # in calibration between the K models; these do not).
    fold_mean = {n: {key: float(np.mean([f["levels"][n]["utterance"][key] for f in per_fold]))
                     for key in ("mse", "lcc", "srcc", "ktau")} for n in names}
    report = {"folds": cfg.folds, "group_by": cfg.group_by, "split": folds.description, "selection": selection,
              "clips": len(items), "levels": levels, "intervals_95": intervals, "bootstrap": bootstrap,
              "per_fold_mean_utterance": fold_mean, "per_fold": per_fold}
    write_text_atomic(run_dir / "cv.json", json.dumps(report, indent=2))
    plot_scatter(pred, true, names, [(t.low, t.high) for t in folds.manifest.targets], run_dir / "scatter.png")

    console.print(f"{prefix}OUT-OF-FOLD ({len(items)} clips, {cfg.folds} folds; 95% intervals from {RESAMPLES} resamples of "
                  f"the {n_groups} {unit}):", markup=False)
    for n in names:
        for level, m in levels[n].items():
            console.print(f"  {n} [{level.upper()}] {_fmt(m, intervals[n][level])}", markup=False)
    for n in names:
        values = ", ".join(f"{f['levels'][n]['utterance']['srcc']:.3f}" for f in per_fold)
        console.print(f"  {n} per fold (held-out clips, not pooled): SRCC mean {fold_mean[n]['srcc']:.4f} ({values})",
                      markup=False)
    console.print(f"{prefix}cross-validation: {run_dir / 'cv.json'}, {run_dir / 'oof_predictions.csv'}", markup=False)
    return report

