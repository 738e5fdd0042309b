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
from mos.trainer.splits import fold_splits, make_folds
from mos.trainer.validation import level_metrics

RESAMPLES = 2000


@dataclass
class CvResult:
    run_dir: Path
    levels: dict[str, dict[str, dict[str, float]]]  # target -> level -> metrics (out of fold)
    intervals: dict[str, dict[str, dict[str, list[float]]]]  # target -> level -> metric -> [low, high]
    per_fold: list[dict[str, Any]]


def _selection(cfg: TrainConfig, unit: str) -> str:
    return (f"inner validation: in each fold, early stopping (patience {cfg.patience}, at most {cfg.epochs} epochs) "
            f"and the best checkpoint are chosen on {cfg.val_fraction:.0%} of the training folds' {unit}, held out "
            f"from its training; the held-out fold is scored once, by that checkpoint")


def _fmt(m: dict[str, float], ci: dict[str, list[float]]) -> str:
    return " ".join(f"{k.upper()}={m[k]:.4f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" for k in ("mse", "lcc", "srcc", "ktau"))


def run_cross_validation(cfg: TrainConfig, console: Console, data: Path, columns: ColumnMap | None,
                         run_dir: Path, sources: dict[str, str]) -> CvResult:
    folds = make_folds(data, columns, cfg.folds, cfg.seed, cfg.group_by)
    unit = f"{cfg.group_by} values" if cfg.group_by else "clips"
    selection = _selection(cfg, unit)
    console.print(f"cross-validation: {folds.description}", markup=False)
    console.print(f"model choice: {selection}", markup=False)
    listener_norm = listener_norm_active(cfg, folds.manifest, console)
    clear_run_folder(run_dir, cfg, console)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", json.dumps(
        {"train": cfg.to_dict(), "cv": {"folds": cfg.folds, "split": folds.description, "selection": selection},
         **sources}, indent=2))

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
            console.print(f"fold {k + 1}/{cfg.folds}: finished earlier ({done})", markup=False)
        else:
            fold_cfg = replace(cfg, name=f"fold{k + 1}", seed=cfg.seed + k, folds=0, overwrite=False,
                               resume=cfg.resume and (fold_dir / "checkpoints" / "last.pt").is_file())
            log_path = fold_dir / "train.log"
            fold_dir.mkdir(parents=True, exist_ok=True)
            with log_path.open("a", encoding="utf-8") as log:
                fold_console = Console(file=log, width=200, highlight=False, soft_wrap=True)
                if listener_norm:
                    splits, report = clean_training(cfg, splits)
                    write_report(fold_dir, report, splits.train.source)
                    fold_console.print(report.line(), markup=False)
                    console.print(f"fold {k + 1}/{cfg.folds}: {report.line()}", markup=False)
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
        console.print(f"fold {k + 1}/{cfg.folds}: {info['n_train']} train / {info['n_inner_validation']} inner-validation / "
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

    console.print(f"OUT-OF-FOLD ({len(items)} clips, {cfg.folds} folds; 95% intervals from {RESAMPLES} resamples of "
                  f"the {n_groups} {unit}):", markup=False)
    for n in names:
        for level, m in levels[n].items():
            console.print(f"  {n} [{level.upper()}] {_fmt(m, intervals[n][level])}", markup=False)
    for n in names:
        values = ", ".join(f"{f['levels'][n]['utterance']['srcc']:.3f}" for f in per_fold)
        console.print(f"  {n} per fold (held-out clips, not pooled): SRCC mean {fold_mean[n]['srcc']:.4f} ({values})",
                      markup=False)
    console.print(f"cross-validation: {run_dir / 'cv.json'}, {run_dir / 'oof_predictions.csv'}", markup=False)
    return CvResult(run_dir, levels, intervals, per_fold)

