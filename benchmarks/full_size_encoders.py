"""Every pretrained encoder family at its published base size, end to end through the CLI: one
epoch of `mos train`, `mos export --quantize int8`, `mos score` (fp32 and --int8), so that paths
that only full-size models reach are exercised before a user's real checkpoint finds them.

    python benchmarks/full_size_encoders.py [--families clap,ast,wav2vec2,hubert,wavlm,data2vec-audio]
        [--train 16] [--validation 16] [--seconds 2] [--threads 2] [--clean]
        [--out benchmarks/results/full_size_encoders.json]

Protocol, per family (run the families one at a time on a shared CPU: `--families clap`):
- the model: transformers' default config of the family (the published base shape) with RANDOM
  weights, saved with save_pretrained where `mos train --audio-encoder DIR` reads it
  (benchmarks/make_encoder_dirs.py; CLAP gets a RoBERTa-style tokenizer trained there, and its
  text tower is the text encoder too: one pooled, projected feature per caption);
- the data: the built-in demo set (XACLE layout), `--train` + `--validation` clips of `--seconds`;
- train: `mos train DATA --epochs 1 --batch-size 8`; CLAP with `--recipe musiceval-baseline`
  (audio tower fine-tuned, per-target linear heads; `--audio-only-targets quality`, the demo's
  audio-only target), AST with `--head pooled` (one frame per window), the speech models with the
  default fusion head; non-CLAP families are audio-only (`--text-encoder none`) unless `--text`;
- export: `mos export RUN --quantize int8 --force` (--force: the validation-SRCC rule, which random
  weights and a few validation clips cannot meet in any meaningful way, does not keep int8 out,
  so that `mos score --int8` runs; the MAE and padding rules still apply; whether the SRCC rule
  held is recorded; `--no-force` exports as a user would);
- score: `mos score` on the validation clips, fp32 then `--int8`, `--threads` threads; clips/s as
  `mos score` reports it (a few clips: start-up and one batch dominate; read it as a size check,
  not as a speed benchmark: benchmarks/encoder_speed.py measures speed).
Recorded per family: parameters (per tower for CLAP), the bundle's file sizes, which int8 models
were kept (forced, or why not), clips/s fp32 and int8, every step's wall time and exit status, and the
last lines of a failed step's output. Results merge into `--out` family by family; no absolute paths.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from make_encoder_dirs import DIRS, make  # noqa: E402

FAMILIES = ("clap", "ast", "wav2vec2", "hubert", "wavlm", "data2vec-audio")
HEADS = {"ast": "pooled"}
AUDIO_ONLY_TARGET = "quality"  # the demo set's audio quality: the baseline recipe's audio-only head
TAIL_LINES = 15


def run(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run a mos command of this checkout, output appended to `log`: exit status, wall seconds,
    the load average after it, and its last lines when it failed."""
    shown = " ".join(["mos", *cmd])
    print(f"$ {shown}", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mos", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {shown}\n{done.stdout}\n")
    step: dict[str, Any] = {"command": shown, "rc": done.returncode, "seconds": round(time.perf_counter() - t0, 1),
                            "load_average_after": [round(v, 2) for v in os.getloadavg()]}
    if done.returncode != 0:
        step["tail"] = done.stdout.strip().splitlines()[-TAIL_LINES:]
        print("\n".join(["  FAILED:", *step["tail"]]), flush=True)
    step["output"] = done.stdout
    return step


def parameters(model_dir: Path) -> dict[str, int]:
    """Parameter counts from the safetensors headers: total, and per tower for CLAP."""
    from safetensors import safe_open

    counts: dict[str, int] = {"total": 0}
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= int(d)
                counts["total"] += n
                tower = key.split("_", 1)[0] if key.startswith(("audio_", "text_")) else None
                if tower is not None:
                    counts[tower] = counts.get(tower, 0) + n
    return counts


def clips_per_s(output: str) -> float | None:
    found = re.search(r"([0-9.]+) clips/s", output)
    return float(found.group(1)) if found else None


def export_measured(output: str) -> dict[str, Any]:
    """What `mos export` printed about its int8 models: audio ms per window-long clip and text ms
    per caption, fp32 -> int8 (its own medians, 2 threads)."""
    out: dict[str, Any] = {}
    audio = re.search(r"speed per ([0-9.]+) s clip \(([^)]*)\) ([0-9.]+) ms -> ([0-9.]+) ms", output)
    if audio:
        out["audio_ms_per_clip"] = {"clip_seconds": float(audio.group(1)), "how": audio.group(2),
                                    "fp32": float(audio.group(3)), "int8": float(audio.group(4))}
    text = re.search(r"ms per caption \(([^)]*)\) ([0-9.]+) -> ([0-9.]+)", output)
    if text:
        out["text_ms_per_caption"] = {"how": text.group(1), "fp32": float(text.group(2)), "int8": float(text.group(3))}
    return out


def bundle_summary(bundle: Path) -> dict[str, Any]:
    """File sizes (MB) and which int8 models the export kept, from mos.json."""
    meta = json.loads((bundle / "mos.json").read_text(encoding="utf-8"))
    variants = meta.get("variants", {})
    int8 = (meta.get("export", {}).get("variants", {}) or {}).get("int8") or {}
    text = int8.get("text") or {}
    out: dict[str, Any] = {
        "files_mb": {name: round((bundle / name).stat().st_size / 1e6, 1) for name in sorted(meta["files"])},
        "audio_int8": "kept" if "int8" in variants else "not written",
        "text_output": "pooled [batch, 1, dim]" if (meta.get("text") or {}).get("pooled") else
                       "tokens [batch, tokens, dim]" if meta.get("text") else None,
    }
    if int8.get("forced"):
        out["audio_int8"] = f"kept, {int8['forced']}"
    if meta.get("text"):
        out["text_int8"] = "kept" if "text_int8" in variants else f"not written: {text.get('why', '')}"
        if text.get("forced"):
            out["text_int8"] = f"kept, {text['forced']}"
    return out


def one_family(family: str, data: Path, work: Path, args: argparse.Namespace, log: Path) -> dict[str, Any]:
    model_dir = work / "encoders" / DIRS[family]
    result: dict[str, Any] = {"model": f"{DIRS[family]} (transformers default config, random weights)"}
    if not (model_dir / "config.json").is_file():
        t0 = time.perf_counter()
        make(family, model_dir)
        result["build_seconds"] = round(time.perf_counter() - t0, 1)
    result["parameters"] = parameters(model_dir)
    result["model_dir_mb"] = round(sum(f.stat().st_size for f in model_dir.iterdir()) / 1e6, 1)
    runs = work / "runs"
    run_dir = runs / family
    train = ["train", str(data), "--audio-encoder", str(model_dir), "--epochs", "1", "--batch-size", "8",
             "--runs-dir", str(runs), "--name", family, "--overwrite"]
    if family == "clap":
        train += ["--recipe", "musiceval-baseline", "--audio-only-targets", AUDIO_ONLY_TARGET,
                  "--text-encoder", str(model_dir)]
    else:
        train += ["--text-encoder", args.text, "--head", HEADS.get(family, "fusion")]
    steps: dict[str, Any] = {}
    result["steps"] = steps
    steps["train"] = run(train, log)
    if steps["train"]["rc"] == 0:
        steps["export"] = run(["export", str(run_dir), "--quantize", "int8", *(["--force"] if args.force else [])], log)
    if "export" in steps and steps["export"]["rc"] == 0:
        bundle = run_dir / "bundle"
        result["bundle"] = bundle_summary(bundle)
        result["export_measured"] = export_measured(steps["export"]["output"])
        notes = [line.strip() for line in steps["export"]["output"].splitlines() if line.strip().startswith("note:")]
        if notes:
            result["export_notes"] = notes
        score = ["score", str(data / "wav" / "validation"), "--bundle", str(bundle), "--threads", str(args.threads),
                 "--quiet"]
        if family == "clap" or args.text != "none":
            score += ["--captions", str(data / "meta_data" / "validation_average.csv")]
        variants = [("fp32", [])] + ([("int8", ["--int8"])] if result["bundle"]["audio_int8"] != "not written" else [])
        for variant, extra in variants:
            steps[f"score_{variant}"] = run([*score, "--out", str(run_dir / f"scores-{variant}.csv"), *extra], log)
            result[f"clips_per_s_{variant}"] = clips_per_s(steps[f"score_{variant}"]["output"])
    for step in steps.values():
        step.pop("output", None)
    result["ok"] = all(s["rc"] == 0 for s in steps.values()) and "score_fp32" in steps
    if args.clean:
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated subset of {', '.join(FAMILIES)}")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/full-size"))
    ap.add_argument("--train", type=int, default=16, help="training clips of the demo set")
    ap.add_argument("--validation", type=int, default=16, help="validation clips (also the clips scored)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each demo clip")
    ap.add_argument("--threads", type=int, default=2, help="mos score --threads")
    ap.add_argument("--text", default="none", help="text encoder of the non-CLAP families (none or minilm)")
    ap.add_argument("--no-force", dest="force", action="store_false",
                    help="export without --force: int8 models that miss the SRCC rule (likely on random weights "
                         "and a few validation clips) are left out, and --int8 scoring with them")
    ap.add_argument("--clean", action="store_true", help="remove each family's model folder and run after it")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/full_size_encoders.json"))
    args = ap.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")

    sys.path.insert(0, str(REPO))
    from mos.bench.machine import machine_info
    from mos.data.demo import DemoConfig, build_demo

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data = build_demo(work / "data", DemoConfig(n_train=args.train, n_validation=args.validation, seconds=args.seconds))
    report: dict[str, Any] = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    report.update({"what": " ".join((__doc__ or "").split("\n\n")[0].split()), "protocol": (__doc__ or "").split("Protocol, ")[1].strip()})
    report.setdefault("families", {})
    for family in families:
        print(f"== {family}", flush=True)
        t0 = time.perf_counter()
        machine = machine_info()  # the load average at the start
        result = one_family(family, data, work, args, log)
        result.update({"machine": machine, "seconds": round(time.perf_counter() - t0, 1),
                       "data": {"train_clips": args.train, "validation_clips": args.validation,
                                "clip_seconds": args.seconds, "rate": 16000},
                       "score_threads": args.threads, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        report["families"][family] = result
        args.out.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(report, indent=1)
        for absolute, name in ((str(work.resolve()), "<work>"), (str(work), "<work>"), (str(REPO), "<repo>")):
            text = text.replace(absolute, name)
        args.out.write_text(text + "\n", encoding="utf-8")
        shown = {k: result.get(k) for k in ("ok", "parameters", "clips_per_s_fp32", "clips_per_s_int8")}
        print(json.dumps({**shown, **result.get("bundle", {})}), flush=True)
    print(f"results: {args.out}; log: {log}")
    return 0 if all(report["families"][f]["ok"] for f in families) else 1


if __name__ == "__main__":
    sys.exit(main())
