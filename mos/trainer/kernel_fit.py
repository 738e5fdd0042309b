"""`mos train --head svr|ridge`: one regressor per target fitted once, with scikit-learn, on a frozen
encoder's pooled embeddings (the masked-mean audio embedding of each scoring window, with the
caption's mean token embedding after it when the model uses text), then validated once.

Each training window is one sample carrying its clip's target; the embedding is standardised with
the training windows' statistics and the target with the training clips' mean and std. The
hyperparameters (SVR: C and gamma, gamma in units of 1/D, i.e. sklearn's "scale" on standardised
inputs; ridge: alpha) are chosen by a grouped K-fold search (GroupKFold, up to MAX_INNER_FOLDS
folds, lowest mean squared error, the first such grid point on ties) over the TRAINING clips only,
grouped by the run's --group-by column (else by clip): the validation or held-out clips are never
seen. The fitted regressor becomes the model's head (mos.model.kernel_head.FittedRegressor), so
checkpoints, `mos export` and `mos score` need nothing else. Same data, same fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mos.audio import window_samples
from mos.errors import MosError
from mos.files import write_text_atomic
from mos.heads import SVR
from mos.model import MosModel
from mos.model.kernel_head import FittedRegressor
from mos.trainer.checkpoint import copy_checkpoint, save_checkpoint
from mos.trainer.feature_cache import FeatureBatch
from mos.trainer.validation import batch_windows, format_epoch, mean_srcc

GRID_C = (0.1, 1.0, 10.0)  # on standardised targets; larger C magnifies float32 noise in the embedding
GRID_GAMMA = (0.1, 1.0, 10.0)  # times 1 / embedding size
GRID_ALPHA = tuple(10.0 ** k for k in range(-2, 6))
MAX_INNER_FOLDS = 5
FITTED = "fitted once"
FIT_REPORT = "kernel_fit.json"


@dataclass
class Fit:
    """One target's fitted pipeline (StandardScaler -> SVR or Ridge) on standardised targets."""

    kind: str
    estimator: Any  # sklearn Pipeline
    params: dict[str, float]
    inner_mse: float  # the chosen grid point's mean squared error over the inner folds (standardised units)
    inner_folds: int
    y_mean: float
    y_std: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions on the target's own scale, as sklearn computes them."""
        return self.estimator.predict(np.asarray(x, dtype=np.float64)) * self.y_std + self.y_mean


def param_grid(kind: str, dim: int) -> dict[str, list[float]]:
    if kind == SVR:
        return {"reg__C": list(GRID_C), "reg__gamma": [g / dim for g in GRID_GAMMA]}
    return {"reg__alpha": list(GRID_ALPHA)}


def fit_regressor(x: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str) -> Fit:
    """Fit `kind` on embeddings `x` [n, D] and targets `y` [n], the hyperparameters chosen by a
    grouped K-fold search over these samples alone (no sample's group in both sides of a fold)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR as SkSVR

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise MosError(f"--head {kind}: the hyperparameter search needs at least 2 groups of training clips; "
                       f"found {n_groups}")
    y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
    reg = SkSVR(kernel="rbf") if kind == SVR else Ridge()
    folds = min(MAX_INNER_FOLDS, n_groups)
    search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("reg", reg)]), param_grid(kind, x.shape[1]),
                          scoring="neg_mean_squared_error", cv=GroupKFold(n_splits=folds), n_jobs=1, refit=True)
    search.fit(x, (y - y_mean) / y_std, groups=groups)
    params = {k.removeprefix("reg__"): float(v) for k, v in search.best_params_.items()}
    return Fit(kind, search.best_estimator_, params, float(-search.best_score_), folds, y_mean, y_std)


def load_fit(head: FittedRegressor, fit: Fit, target_mean: float, target_std: float) -> None:
    """Put `fit` into `head`, its output mapped to the model's normalised targets
    ((score - target_mean) / target_std)."""
    scaler, reg = fit.estimator.named_steps["scale"], fit.estimator.named_steps["reg"]
    a = fit.y_std / target_std
    b = (fit.y_mean - target_mean) / target_std
    intercept = float(np.ravel(reg.intercept_)[0]) * a + b
    if fit.kind == SVR:
        head.set_fit(scaler.mean_, scaler.scale_, intercept, support=reg.support_vectors_,
                     dual=np.ravel(reg.dual_coef_) * a, gamma=float(reg._gamma))
    else:
        head.set_fit(scaler.mean_, scaler.scale_, intercept, coef=np.ravel(reg.coef_) * a)


def pooled_windows(model: MosModel, loader: Any, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The pooled embedding [n, D] of every scoring window of a loader's clips, and each window's
    manifest position [n]: from cached encoder features, or from the audio cut as `mos score` cuts it."""
    model.eval()
    xs, owners = [], []
    with torch.no_grad():
        for batch in loader:
            if isinstance(batch, FeatureBatch):
                b = batch.to(device)
                pooled = model.fusion(model.audio_encoder.mix(b.feats), b.frame_lengths, b.text, b.text_lengths)
                xs.append(pooled.float().cpu().numpy())
                owners.append(batch.index.numpy())
                continue
            window = window_samples(model.cfg.window_seconds, model.cfg.sample_rate)
            waves, lengths, owner = batch_windows(batch, window)
            for k, i in enumerate(owner):  # one window at a time: no padding, whatever the encoder
                n = int(lengths[k])
                audio, frames = model.encode_audio(waves[k:k + 1, :n].to(device), lengths[k:k + 1].to(device))
                text = None if batch.text is None else batch.text[i:i + 1].to(device)
                text_lengths = None if batch.text_lengths is None else batch.text_lengths[i:i + 1].to(device)
                xs.append(model.fusion(audio, frames, text, text_lengths).float().cpu().numpy())
                owners.append(batch.index[i:i + 1].numpy())
    return np.concatenate(xs), np.concatenate(owners)


def fit_kernel_run(trainer: Any) -> Any:
    """Fit the heads of a mos.trainer.loop.Trainer whose model has an svr/ridge head, validate once,
    write the run folder as a trained run has it (checkpoints, metrics.jsonl, val_predictions.csv,
    best_metrics.json, plots) and kernel_fit.json; returns the trainer's RunResult."""
    cfg, console, model = trainer.cfg, trainer.console, trainer.model
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    trainer._write_config()
    train = trainer.splits.train
    console.print(f"data: {trainer.splits.description}", markup=False)
    console.print(f"model: --head {model.cfg.head}, one regressor per target ({', '.join(model.cfg.target_names)}) "
                  f"on the {model.fusion.out_dim}-value pooled embedding; no epochs: fitted once on the training "
                  f"clips, then validated once (--epochs, --lr, --patience and the losses do not apply)", markup=False)
    (trainer.run_dir / "metrics.jsonl").write_text("")
    untrained, vloss0, _, _ = trainer.validate()
    history = [{"epoch": 0, "train_loss": None, "val_loss": vloss0, "val": untrained}]
    trainer._append_metrics(history[0])
    console.print(format_epoch("0 (unfitted: the training mean)", None, untrained), markup=False)

    x, owner = pooled_windows(model, trainer.eval_loader(train), trainer.device)
    group_of = trainer.splits.groups or {}
    groups = np.array([group_of.get(train.items[i].id, train.items[i].id) for i in owner])
    unit = f"{cfg.group_by} values" if cfg.group_by and trainer.splits.groups else "clips"
    where = (f"the {len(set(groups.tolist()))} training clips" if unit == "clips"
             else f"the {len(set(groups.tolist()))} {unit} of the training clips")
    report: dict[str, Any] = {"head": model.cfg.head, "windows": int(len(owner)), "clips": len(train.items),
                              "groups": len(set(groups.tolist())), "grouped_by": unit, "targets": {}}
    for j, t in enumerate(model.cfg.targets):
        y = np.array([train.items[i].targets[t.name] for i in owner], dtype=np.float64)
        keep = np.isfinite(y)
        fit = fit_regressor(x[keep], y[keep], groups[keep], model.cfg.head)
        load_fit(model.fitted_head(t.name), fit, t.mean, t.std)
        sv = len(fit.estimator.named_steps["reg"].support_vectors_) if fit.kind == SVR else None
        report["targets"][t.name] = {"params": fit.params, "inner_cv_mse_standardised": fit.inner_mse,
                                     "inner_folds": fit.inner_folds, **({"support_vectors": sv} if sv else {})}
        console.print(f"{t.name}: {model.cfg.head} {' '.join(f'{k}={v:.4g}' for k, v in fit.params.items())} "
                      f"chosen by a {fit.inner_folds}-fold search over {where} ({len(y)} windows; "
                      f"inner MSE {fit.inner_mse:.4f} in standardised units)"
                      + (f"; {sv} support vectors" if sv else ""), markup=False)
    write_text_atomic(trainer.run_dir / FIT_REPORT, json.dumps(report, indent=2))

    val, vloss, _, _ = trainer.validate()
    entry = {"epoch": 1, "train_loss": None, "val_loss": vloss, "val": val, "fit": report["targets"]}
    history.append(entry)
    console.print(format_epoch(f"1 (fitted once, {model.cfg.head})", None, val), markup=False)
    trainer.history = history
    trainer.best_epoch, trainer.best_srcc = 1, mean_srcc(val)
    trainer.best_score = trainer.selection_score(val, vloss)
    state = {"epoch": 1, "best_srcc": trainer.best_srcc, "best_score": trainer.best_score, "best_epoch": 1,
             "bad_epochs": 0, "history": history}
    last = trainer.ckpt_dir / "last.pt"
    save_checkpoint(last, model, {"train_config": cfg.to_dict(), "data": trainer.splits.description,
                                  **trainer.checkpoint_extra, "trainer_state": state, "validation_metrics": val,
                                  "epoch": 1})
    copy_checkpoint(last, trainer.ckpt_dir / "best.pt")
    trainer._append_metrics(entry)
    console.print(f"FITTED ONCE: {model.cfg.head} heads saved -> {trainer.ckpt_dir / 'best.pt'}", markup=False)
    return trainer._finish(untrained, FITTED)
