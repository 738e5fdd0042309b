"""Accuracy on real ratings: `mos train --folds` on the MUSHRA speech-codec set, split by utterance.

    python benchmarks/mushra_accuracy.py DATA [--runs-dir runs] [--folds 4] [--repeats R] [--no-dnsmos]
        [--audio-encoder conv|aisfx|DIR] [--finetune-audio] [--encoder-lr LR] [--head fusion|pooled]

DATA is the mushra-speech-codec folder (`ratings.csv` + `audio/`: 128 clips = 16 utterances x
8 codec conditions, mean MUSHRA 0-100 from 8-11 listeners, no captions; see its README for the
source and licence).

Protocol (the trainer's own cross-validation, `mos.trainer.cv`, fixed before looking at figures):
- the 16 utterances (`signal`) are shuffled with `--seed` and dealt to `--folds` folds; each
  fold's clips are scored by a model trained only on the other folds' utterances;
- inside a fold, early stopping and the best checkpoint are chosen on an inner validation split
  of the training folds (20% of their utterances); the held-out fold is scored once, by that
  checkpoint, in windows as `mos score` scores;
- the model is the default edge model, audio-only (`--text-encoder none`), or the
  `--audio-encoder` given (frozen, its features cached, unless `--finetune-audio`), trained with
  `mos train`'s defaults unless `--epochs`, `--crop` (training window, s), `--batch-size`,
  `--lr`, `--encoder-lr` or `--head` are given: the figures are what `mos train ... --folds 4
  --group-by signal` prints;
- the out-of-fold predictions of all 128 clips are pooled and scored at clip level and system
  level (the 8 conditions), with 95% intervals from resampling utterances (not clips);
- with `--repeats R` (R > 1) all of the above runs R times with other fold assignments
  (`mos train --repeats`): "ours" is then the mean over the R repeats of the pooled figures, with
  their SD and each repeat's figures under `ours_over_repeats`; the intervals, per-fold figures
  and out-of-fold predictions are repeat 1's (the same cross-validation as without --repeats);
- DNSMOS (the `speechmos` package, P.835 `ovrl_mos` and others) scores the same clips, decoded
  and resampled to 16 kHz by mos.audio.read_audio; it needs no training, so its figures are on
  the same clips with no folds. Without speechmos: `--no-dnsmos`, or `--dnsmos-from FILE` to
  reuse the per-clip DNSMOS scores an earlier results file recorded (said so in the output).

The fold runs go to `<runs-dir>/<name>/` (a normal `mos train --folds` run folder, replaced on
each run); the results go to benchmarks/results/mushra_accuracy.json, which holds no absolute
paths. 128 clips is tiny: a clip-level SRCC has a standard error around 0.08 here, and a
system-level SRCC over 8 systems moves by 0.1-0.2 with one swapped pair. Read the figures as
"does it learn anything that transfers across utterances".
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLUMNS = "path=path,target:mushra=mean_score,system=system,range:mushra=0:100"


def ours_name(encoder: str, finetune: bool, head: str) -> str:
    if encoder == "conv":
        return "ours (audio-only edge CNN, out-of-fold)"
    what = encoder if encoder == "aisfx" else Path(encoder).name
    return f"ours ({what}, {'fine-tuned' if finetune else 'frozen'}, {head} head, out-of-fold)"


def _levels(pred: np.ndarray, true: np.ndarray, systems: list[str]) -> dict:
    from mos.metrics import evaluate_levels

    return {k: v.as_dict() for k, v in evaluate_levels(pred, true, systems).items()}


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


def dnsmos_scores(data: Path, ids: list[str]) -> tuple[dict[str, dict[str, float]], float | None, str]:
    """DNSMOS sig/bak/ovrl/p808 per clip id (16 kHz via mos.audio), seconds, version string."""
    from importlib.metadata import version

    from speechmos import dnsmos

    from mos.audio import read_audio

    out: dict[str, dict[str, float]] = {}
    dnsmos.run(np.zeros(16000, dtype=np.float32), 16000)  # first call JIT-compiles librosa's mel code: not timed
    _quiet_sessions(dnsmos)
    t0 = time.perf_counter()
    for clip_id in ids:
        x = np.clip(read_audio(data / clip_id, 16000), -1.0, 1.0)
        r = dnsmos.run(x, 16000)
        out[clip_id] = {k: float(r[k]) for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}
    return out, time.perf_counter() - t0, f"speechmos {version('speechmos')}"


def dnsmos_from_file(path: Path, ids: list[str]) -> tuple[dict[str, dict[str, float]], float | None, str]:
    """The per-clip DNSMOS scores an earlier results file recorded (same clips, same ids)."""
    peer = json.loads(path.read_text(encoding="utf-8")).get("peer") or {}
    scores = peer.get("per_clip") or {}
    missing = [i for i in ids if i not in scores]
    if missing:
        sys.exit(f"{path}: holds no DNSMOS scores for {len(missing)} clip(s), e.g. {missing[0]}")
    return {i: scores[i] for i in ids}, peer.get("seconds_128_clips"), f"{peer.get('package', 'speechmos')}, per-clip scores from {path.name}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="the mushra-speech-codec folder (ratings.csv and audio/)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="where the cross-validation run folder goes (default: runs/, which git ignores)")
    p.add_argument("--name", default="mushra-accuracy", help="run folder name under --runs-dir")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1, help="repeat the cross-validation with R fold assignments "
                   "(mos train --repeats): mean and SD over them")
    p.add_argument("--epochs", type=int, default=None, help="default: mos train's")
    p.add_argument("--crop", type=float, default=None, help="training window in seconds (clips are ~2.7 s; default: mos train's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: mos train's")
    p.add_argument("--lr", type=float, default=None, help="default: mos train's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--more-seeds", default="", help="e.g. 1,2: also cross-validate with these seeds (folds and "
                   "initialisation change) and report the spread of clip/system SRCC over all seeds")
    p.add_argument("--audio-encoder", default="conv", help="conv (default), aisfx or a transformers directory")
    p.add_argument("--finetune-audio", action="store_true", help="train the pretrained encoder too")
    p.add_argument("--encoder-lr", type=float, default=None, help="default: mos train's")
    p.add_argument("--head", default=None, help="fusion or pooled (default: mos train's)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-dnsmos", action="store_true", help="skip the DNSMOS peer")
    p.add_argument("--dnsmos-from", type=Path, default=None,
                   help="reuse the per-clip DNSMOS scores of an earlier results file instead of running speechmos")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mushra_accuracy.json")
    args = p.parse_args(argv)

    import torch
    from rich.console import Console

    from mos.metrics import bootstrap_levels
    from mos.trainer.config import TrainConfig
    from mos.trainer.run import run_training

    table = args.data / "ratings.csv"
    if not table.is_file():
        sys.exit(f"{args.data}: no ratings.csv here (expected the mushra-speech-codec folder)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    given = {"epochs": args.epochs, "max_seconds": args.crop, "batch_size": args.batch_size, "lr": args.lr,
             "encoder_lr": args.encoder_lr if args.finetune_audio else None, "head": args.head}
    cfg = TrainConfig(data=str(table), columns=COLUMNS, text_encoder="none", folds=args.folds, repeats=args.repeats,
                      group_by="signal",
                      seed=args.seed, device="cpu", runs_dir=str(args.runs_dir), name=args.name,
                      audio_encoder=args.audio_encoder, finetune_audio=args.finetune_audio,
                      overwrite=True).with_overrides(**given)
    ours_label = ours_name(args.audio_encoder, args.finetune_audio, cfg.model_head)
    encoder_flags = "" if args.audio_encoder == "conv" else (
        f" --audio-encoder {args.audio_encoder if args.audio_encoder == 'aisfx' else Path(args.audio_encoder).name}"
        + (" --finetune-audio" if args.finetune_audio else "")
        + ("" if args.head else f" --head {cfg.model_head}"))
    started = time.perf_counter()
    result = run_training(cfg, Console(highlight=False, soft_wrap=True))
    train_seconds = time.perf_counter() - started
    cv = json.loads((result.run_dir / "cv.json").read_text(encoding="utf-8"))
    # repeat 1 (the whole run without --repeats): its intervals, folds and out-of-fold predictions
    first_dir = result.run_dir if args.repeats == 1 else result.run_dir / "repeats" / "r1"
    first = json.loads((first_dir / "cv.json").read_text(encoding="utf-8"))
    over_repeats = None if args.repeats == 1 else {
        "repeats": cv["repeats"], "split": cv["split"], "mean": cv["levels"]["mushra"], "sd": cv["levels_sd"]["mushra"],
        "per_repeat": [{"seed": r["seed"], "levels": r["levels"]["mushra"]} for r in cv["per_repeat"]]}
    per_seed = {args.seed: cv["levels"]["mushra"]}
    for seed in [int(x) for x in args.more_seeds.split(",") if x.strip()]:
        other = run_training(cfg.with_overrides(seed=seed, name=f"{args.name}-seed{seed}"),
                             Console(highlight=False, soft_wrap=True))
        per_seed[seed] = json.loads((other.run_dir / "cv.json").read_text(encoding="utf-8"))["levels"]["mushra"]
    seed_summary = {
        "seeds": list(per_seed),
        **{f"{level}_srcc": {"values": [round(v[level]["srcc"], 4) for v in per_seed.values()],
                             "mean": round(float(np.mean([v[level]["srcc"] for v in per_seed.values()])), 4),
                             "std": round(float(np.std([v[level]["srcc"] for v in per_seed.values()])), 4)}
           for level in ("utterance", "system")},
    }
    with (first_dir / "oof_predictions.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids = [r["id"] for r in rows]
    true = np.array([float(r["true_mushra"]) for r in rows])
    systems = [r["system"] for r in rows]
    utts = [r["group"] for r in rows]
    ours = np.array([float(r["mushra"]) for r in rows])

    results = {ours_label: cv["levels"]["mushra"]}
    intervals = {ours_label: first["intervals_95"]["mushra"]}
    peer = None
    scores = None
    if args.dnsmos_from is not None:
        scores, dn_secs, dn_source = dnsmos_from_file(args.dnsmos_from, ids)
    elif not args.no_dnsmos:
        try:
            scores, dn_secs, dn_source = dnsmos_scores(args.data, ids)
        except ImportError as exc:
            print(f"DNSMOS skipped: {exc} (pip install speechmos librosa, or --dnsmos-from an earlier results file)")
    if scores is not None:
        for key in ("ovrl_mos", "sig_mos", "p808_mos"):
            vals = np.array([scores[i][key] for i in ids])
            name = f"DNSMOS {key} ({dn_source.split(',')[0]})"
            results[name] = _levels(vals, true, systems)
            intervals[name] = bootstrap_levels(vals, true, utts, systems, seed=args.seed)
        peer = {"package": dn_source.split(",")[0], "source": dn_source, "seconds_128_clips": dn_secs,
                "per_clip": {i: scores[i] for i in ids}}
        for fold in first["per_fold"]:  # the same per-fold split for DNSMOS, to compare like with like
            idx = [k for k, r in enumerate(rows) if r["fold"] == str(fold["fold"])]
            fold["dnsmos_ovrl_metrics"] = _levels(np.array([scores[ids[k]]["ovrl_mos"] for k in idx]), true[idx],
                                                  [systems[k] for k in idx])

    per_fold_srcc = [f["levels"]["mushra"]["utterance"]["srcc"] for f in first["per_fold"]]
    report = {
        "data": args.data.name,
        "clips": len(rows),
        "utterances": len(set(utts)),
        "systems": sorted(set(systems)),
        "protocol": {"command": f"mos train {args.data.name}/ratings.csv --columns '{COLUMNS}' --folds {args.folds} "
                                f"--group-by signal --text-encoder none --seed {args.seed} --device cpu"
                                + (f" --repeats {args.repeats}" if args.repeats > 1 else "")
                                + encoder_flags
                                + "".join(f" --{k.replace('_', '-')} {v if isinstance(v, str) else format(v, 'g')}"
                                          for k, v in given.items() if v is not None),
                     "folds": args.folds, "repeats": args.repeats, "split_by": "signal (utterance)", "seed": args.seed,
                     "epochs": cfg.epochs, "patience": cfg.patience, "train_crop_seconds": cfg.max_seconds,
                     "batch_size": cfg.batch_size, "lr": cfg.lr,
                     "weights": "best checkpoint on an inner validation split of the training folds' utterances",
                     "split": first["split"].replace(str(table), f"{args.data.name}/ratings.csv"),
                     "selection": cv["selection"],
                     "model": f"{ours_label}: head {cfg.model_head}, text_encoder=none"},
        "results": results,
        # name -> clip/system SRCC intervals (the layout benchmarks/summarize.py reads) and every
        # metric's interval per level
        "bootstrap_over_utterances": {
            name: {"clip_srcc_95": ci["utterance"]["srcc"], "system_srcc_95": ci["system"]["srcc"],
                   "resamples": first["bootstrap"]["resamples"], "levels_95": ci}
            for name, ci in intervals.items()},
        "ours_over_seeds": seed_summary,
        "ours_over_repeats": over_repeats,
        "ours_per_fold_clip_srcc": {"values": per_fold_srcc, "mean": float(np.mean(per_fold_srcc)),
                                    "std": float(np.std(per_fold_srcc))},
        "folds": first["per_fold"],
        "out_of_fold_predictions": {i: round(float(v), 3) for i, v in zip(ids, ours)},
        "peer": peer,
        "seconds": {"cross_validation": round(train_seconds, 1), "total": round(time.perf_counter() - started, 1)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu_threads": torch.get_num_threads(), "platform": platform.platform()},
    }
    text = json.dumps(report, indent=2) + "\n"
    for local in {str(args.data.resolve()), str(Path.cwd()), str(REPO)}:
        if local in text:  # committed results name no folder of this machine
            sys.exit(f"refusing to write {args.out.name}: it would record the local path {local}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"\n{'predictor':48s} {'clip SRCC':>9s} {'clip LCC':>9s} {'sys SRCC':>9s} {'sys LCC':>9s}")
    for name, m in results.items():
        print(f"{name:48s} {m['utterance']['srcc']:9.3f} {m['utterance']['lcc']:9.3f} "
              f"{m['system']['srcc']:9.3f} {m['system']['lcc']:9.3f}")
    of_first = ", repeat 1" if over_repeats is not None else ""
    for name, ci in intervals.items():
        print(f"{name:48s} 95% interval (utterances resampled{of_first}): clip SRCC {np.round(ci['utterance']['srcc'], 3).tolist()}, "
              f"system SRCC {np.round(ci['system']['srcc'], 3).tolist()}")
    print(f"\nper-fold clip SRCC (ours{of_first}): {', '.join(f'{v:.3f}' for v in per_fold_srcc)}")
    if over_repeats is not None:
        m, sd = over_repeats["mean"], over_repeats["sd"]
        print(f"over {args.repeats} repeats (mean +- SD): clip SRCC {m['utterance']['srcc']:.3f} +- "
              f"{sd['utterance']['srcc']:.3f}, system SRCC {m['system']['srcc']:.3f} +- {sd['system']['srcc']:.3f}")
    if len(per_seed) > 1:
        u, y = seed_summary["utterance_srcc"], seed_summary["system_srcc"]
        print(f"over seeds {seed_summary['seeds']}: clip SRCC {u['values']} (mean {u['mean']:.3f}, std {u['std']:.3f}); "
              f"system SRCC {y['values']} (mean {y['mean']:.3f})")
    out = args.out.resolve()
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    print(f"total {report['seconds']['total']:.0f} s -> {shown}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
