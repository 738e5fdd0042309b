"""Accuracy on real ratings: leave-utterances-out cross-validation on the MUSHRA speech-codec set.

    python benchmarks/mushra_accuracy.py [--folds 4] [--epochs 12] [--seed 0] [--no-dnsmos]

Data: ../shared/data/mushra-speech-codec (128 clips = 16 utterances x 8 codec conditions, mean
MUSHRA 0-100 from 8-11 listeners, no captions). See its README for source and licence.

Protocol (fixed before looking at any test figure):
- the 16 utterances (`signal`) are shuffled with `--seed` and cut into `--folds` folds; each
  fold's clips are scored by a model trained only on the other folds' utterances, so no
  utterance is ever in both train and test;
- the model is the default edge model, audio-only (`text_encoder="none"`), trained with
  mos.trainer's loop for a fixed number of epochs; the test fold's predictions come from the
  LAST epoch's weights. The trainer also keeps a "best" checkpoint chosen on its validation
  manifest, which here is the test fold: we ignore it, since choosing on the test fold leaks;
- the out-of-fold predictions of all 128 clips are pooled and scored at utterance level (clip)
  and system level (the 8 conditions, mean over their 16 clips) with mos.metrics.evaluate_levels;
- DNSMOS (the `speechmos` package, ONNX, P.835 overall score `ovrl_mos`) scores the same 128
  clips, decoded and resampled to 16 kHz by mos.audio.read_audio. It needs no training, so its
  figures are on the same clips with no folds. Skipped (and said so) when speechmos is absent.

Writes benchmarks/results/mushra_accuracy.json. 128 clips is tiny: a clip-level SRCC has a
standard error around 0.08 here, and a system-level SRCC over 8 systems moves by 0.1-0.2 with
one swapped pair. Read the figures as "does it learn anything that transfers across utterances".
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "mushra-speech-codec"
COLUMNS = "path=path,target:mushra=mean_score,system=system,range:mushra=0:100"


def make_folds(groups: dict[str, str], n_folds: int, seed: int) -> list[list[str]]:
    """Utterance names split into `n_folds` folds of (nearly) equal size, shuffled by `seed`."""
    names = sorted(set(groups.values()))
    order = np.random.default_rng(seed).permutation(len(names))
    return [sorted(names[i] for i in order[k::n_folds]) for k in range(n_folds)]


def fold_metrics(pred: np.ndarray, true: np.ndarray, systems: list[str]) -> dict:
    from mos.metrics import evaluate_levels

    return {k: v.as_dict() for k, v in evaluate_levels(pred, true, systems).items()}


def bootstrap_ci(pred: np.ndarray, true: np.ndarray, groups: list[str], systems: list[str],
                 n: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """95% intervals of clip- and system-level SRCC, resampling utterances (not clips) with
    replacement, so the interval reflects how few utterances there are."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    index = {g: [i for i, x in enumerate(groups) if x == g] for g in names}
    sys_names = sorted(set(systems))
    clip, system = [], []
    for _ in range(n):
        idx = np.concatenate([index[names[k]] for k in rng.integers(0, len(names), len(names))])
        p, t = pred[idx], true[idx]
        clip.append(spearmanr(p, t)[0])
        sp = [p[[systems[i] == s for i in idx]].mean() for s in sys_names]
        st = [t[[systems[i] == s for i in idx]].mean() for s in sys_names]
        system.append(spearmanr(sp, st)[0])
    q = lambda v: [round(float(np.nanpercentile(v, 2.5)), 3), round(float(np.nanpercentile(v, 97.5)), 3)]  # noqa: E731
    return {"clip_srcc_95": q(clip), "system_srcc_95": q(system), "resamples": n}


def train_fold(manifest, train_ids: set[str], test_ids: set[str], args, k: int, runs_dir: Path):
    """Train on `train_ids`, return (test items, last-epoch predictions on them, seconds)."""
    import torch
    from rich.console import Console

    from mos.data.manifest import Manifest
    from mos.trainer.batches import ClipDataset, collate
    from mos.trainer.checkpoint import load_checkpoint
    from mos.trainer.config import TrainConfig
    from mos.trainer.loop import Trainer, predict
    from mos.trainer.splits import Splits

    train = Manifest([it for it in manifest.items if it.id in train_ids], manifest.targets, manifest.source)
    test = Manifest([it for it in manifest.items if it.id in test_ids], manifest.targets, manifest.source)
    cfg = TrainConfig(
        data=str(DATA / "ratings.csv"),
        columns=COLUMNS,
        text_encoder="none",
        name=f"mushra_fold{k}",
        runs_dir=str(runs_dir),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_seconds=args.crop,
        patience=args.epochs + 1,  # fixed epochs: no early stopping on the test fold
        seed=args.seed + k,
        device="cpu",
    )
    splits = Splits(train, test, f"mushra fold {k}: {len(train)} train / {len(test)} test clips")
    log = io.StringIO()
    t0 = time.perf_counter()
    trainer = Trainer(cfg, splits, Console(file=log, width=200))
    trainer.fit()
    last = load_checkpoint(trainer.ckpt_dir / "last.pt")
    trainer.model.load_state_dict(last["state_dict"])
    names = trainer.model.cfg.target_names
    mean = np.array([t.mean for t in trainer.model.cfg.targets], dtype=np.float32)
    std = np.array([t.std for t in trainer.model.cfg.targets], dtype=np.float32)
    ds = ClipDataset(test, trainer.model.cfg.sample_rate, names, mean, std, None, None)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=False, collate_fn=collate)
    pred, _, _ = predict(trainer.model, loader, torch.device("cpu"), False)
    return test.items, pred[:, 0], time.perf_counter() - t0


def _quiet_sessions(dnsmos_module) -> None:
    """Reopen speechmos's two ORT sessions with thread spinning off (scores unchanged). With
    ORT's default spinning, DNSMOS slows several-fold whenever other processes share the cores."""
    import os

    import onnxruntime as ort

    model = dnsmos_module.dnsmos
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    p808 = os.path.join(os.path.dirname(os.path.abspath(dnsmos_module.__file__)), "dnsmos_models", "model_v8.onnx")
    model.onnx_sess = ort.InferenceSession(model.primary_model_path, so, providers=["CPUExecutionProvider"])
    model.p808_onnx_sess = ort.InferenceSession(p808, so, providers=["CPUExecutionProvider"])


def dnsmos_scores(items) -> tuple[dict[str, dict[str, float]], float, str]:
    """DNSMOS sig/bak/ovrl/p808 per clip id (16 kHz via mos.audio), seconds, version string."""
    from importlib.metadata import version

    from speechmos import dnsmos

    from mos.audio import read_audio

    out: dict[str, dict[str, float]] = {}
    warm = np.zeros(16000, dtype=np.float32)
    dnsmos.run(warm, 16000)  # first call JIT-compiles librosa's mel code (tens of seconds): not timed
    _quiet_sessions(dnsmos)
    t0 = time.perf_counter()
    for it in items:
        x = np.clip(read_audio(it.path, 16000), -1.0, 1.0)
        r = dnsmos.run(x, 16000)
        out[it.id] = {k: float(r[k]) for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}
    return out, time.perf_counter() - t0, version("speechmos")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--crop", type=float, default=2.0, help="random training crop in seconds (clips are ~2.7 s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-dnsmos", action="store_true", help="skip the DNSMOS peer")
    p.add_argument("--runs-dir", type=Path, default=None, help="where fold runs go (default: a temp dir)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mushra_accuracy.json")
    args = p.parse_args(argv)

    import tempfile

    import torch

    from mos.data.table import load_table, load_table_groups, parse_column_spec

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    table = args.data / "ratings.csv"
    cmap = parse_column_spec(COLUMNS)
    manifest = load_table(table, cmap)
    groups = load_table_groups(table, "signal", cmap)
    folds = make_folds(groups, args.folds, args.seed)
    started = time.perf_counter()

    tmp = tempfile.TemporaryDirectory(prefix="mushra_cv_")
    runs_dir = args.runs_dir or Path(tmp.name)
    pred_by_id: dict[str, float] = {}
    fold_of: dict[str, int] = {}
    fold_info = []
    for k, test_utts in enumerate(folds):
        test_ids = {i for i, g in groups.items() if g in test_utts}
        train_ids = {i for i, g in groups.items() if g not in test_utts}
        assert not test_ids & train_ids
        items, pred, secs = train_fold(manifest, train_ids, test_ids, args, k, runs_dir)
        for it, v in zip(items, pred):
            pred_by_id[it.id] = float(v)
            fold_of[it.id] = k
        true = np.array([it.targets["mushra"] for it in items])
        m = fold_metrics(pred, true, [it.system or "" for it in items])
        fold_info.append({"fold": k, "test_utterances": test_utts, "n_test": len(items),
                          "n_train": len(train_ids), "seconds": round(secs, 1), "metrics": m})
        print(f"fold {k}: {len(train_ids)} train / {len(items)} test clips, {secs:.0f} s, "
              f"clip SRCC {m['utterance']['srcc']:.3f} LCC {m['utterance']['lcc']:.3f}", flush=True)
    train_seconds = time.perf_counter() - started

    items = manifest.items
    true = np.array([it.targets["mushra"] for it in items])
    systems = [it.system or "" for it in items]
    ours = np.array([pred_by_id[it.id] for it in items])
    utts = [groups[it.id] for it in items]
    results = {"ours (audio-only edge CNN, out-of-fold)": fold_metrics(ours, true, systems)}
    intervals = {"ours (audio-only edge CNN, out-of-fold)": bootstrap_ci(ours, true, utts, systems, seed=args.seed)}
    peer = None
    if not args.no_dnsmos:
        try:
            scores, dn_secs, dn_version = dnsmos_scores(items)
        except ImportError as exc:
            print(f"DNSMOS skipped: {exc} (pip install speechmos librosa)")
        else:
            for key in ("ovrl_mos", "sig_mos", "p808_mos"):
                vals = np.array([scores[it.id][key] for it in items])
                results[f"DNSMOS {key} (speechmos {dn_version})"] = fold_metrics(vals, true, systems)
                intervals[f"DNSMOS {key} (speechmos {dn_version})"] = bootstrap_ci(vals, true, utts, systems, seed=args.seed)
            peer = {"package": f"speechmos {dn_version}", "seconds_128_clips": round(dn_secs, 1),
                    "per_clip": {i: s for i, s in scores.items()}}
            # the same per-fold split for DNSMOS, to compare like with like
            for info in fold_info:
                ids = [it.id for it in items if fold_of[it.id] == info["fold"]]
                idx = [i for i, it in enumerate(items) if it.id in set(ids)]
                info["dnsmos_ovrl_metrics"] = fold_metrics(
                    np.array([scores[items[i].id]["ovrl_mos"] for i in idx]), true[idx], [systems[i] for i in idx])

    per_fold_srcc = [f["metrics"]["utterance"]["srcc"] for f in fold_info]
    report = {
        "data": str(args.data.relative_to(REPO.parent)) if args.data.is_relative_to(REPO.parent) else str(args.data),
        "clips": len(items),
        "utterances": len(set(groups.values())),
        "systems": sorted(set(systems)),
        "protocol": {"folds": args.folds, "split_by": "signal (utterance)", "seed": args.seed,
                     "epochs": args.epochs, "train_crop_seconds": args.crop, "batch_size": args.batch_size, "lr": args.lr,
                     "weights": "last epoch (fixed epochs, no selection on the test fold)",
                     "model": "default ModelConfig, text_encoder=none"},
        "results": results,
        "bootstrap_over_utterances": intervals,
        "ours_per_fold_clip_srcc": {"values": per_fold_srcc, "mean": float(np.mean(per_fold_srcc)),
                                    "std": float(np.std(per_fold_srcc))},
        "folds": fold_info,
        "out_of_fold_predictions": {it.id: round(pred_by_id[it.id], 3) for it in items},
        "peer": peer,
        "seconds": {"train_and_predict": round(train_seconds, 1), "total": round(time.perf_counter() - started, 1)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu_threads": torch.get_num_threads(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'predictor':48s} {'clip SRCC':>9s} {'clip LCC':>9s} {'sys SRCC':>9s} {'sys LCC':>9s}")
    for name, m in results.items():
        print(f"{name:48s} {m['utterance']['srcc']:9.3f} {m['utterance']['lcc']:9.3f} "
              f"{m['system']['srcc']:9.3f} {m['system']['lcc']:9.3f}")
    for name, ci in intervals.items():
        print(f"{name:48s} 95% interval (utterances resampled): clip SRCC {ci['clip_srcc_95']}, "
              f"system SRCC {ci['system_srcc_95']}")
    print(f"\nper-fold clip SRCC (ours): {', '.join(f'{v:.3f}' for v in per_fold_srcc)}")
    print(f"total {report['seconds']['total']:.0f} s -> {args.out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
