"""Scoring speed and memory per audio encoder, end to end (`mos score` in a fresh process: decode,
resample, captions, model, writing), 10 s clips at 16 kHz each with its own caption, on this CPU:

    python benchmarks/encoder_speed.py [--encoders conv,aisfx,clap,ast,wavlm] [--threads 2]
        [--batch-size 8] [--out benchmarks/results/encoders_cpu.json]

Each encoder at its published size: conv (the edge model), aisfx (its real weights), and
transformers models with RANDOM weights at the shapes of laion/clap-htsat-unfused,
MIT/ast-finetuned-audioset-10-10-0.4593 and microsoft/wavlm-base-plus
(benchmarks/make_encoder_dirs.py; speed does not depend on weight values). Every bundle has the
all-MiniLM-L6-v2 caption encoder and a fusion head (CLAP and AST give one frame per window: a
pooled head), random head weights, and the int8 variant where `mos export` keeps it (its checks
run on random weights here, so whether int8 *keeps accuracy* is measured on trained models, not
here). Per encoder and variant: clips/s, seconds of audio per second (x_realtime), peak RSS of the scoring process, and
the ONNX file's size. Slow encoders score fewer clips (--clips-seconds budget), which the report
records. DNSMOS (speechmos, when installed) is scored on the same clips as the peer.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from make_encoder_dirs import DIRS  # noqa: E402

# Clips per encoder: about half a minute of scoring each at the speeds seen on 2 cores.
CLIPS = {"conv": 400, "aisfx": 96, "clap": 64, "wavlm": 24, "ast": 8}
HEADS = {"clap": "pooled", "ast": "pooled"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoders", default="conv,aisfx,clap,wavlm,ast")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "out" / "encoder-speed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--clips-scale", type=float, default=1.0, help="multiply the clips per encoder (0.1 for a smoke run)")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--bundles-only", action="store_true", help="make the bundles and stop (measure later, on an idle machine)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "encoders_cpu.json")
    args = p.parse_args(argv)

    import make_bundle
    import make_encoder_dirs

    from mos.bench import workload as wl
    from mos.bench.machine import load_average, machine_info
    from mos.bench.memory import measure
    from mos.bundle import load_bundle

    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    dirs = args.work / "encoders"
    wanted = [e for e in encoders if e in DIRS and not (dirs / DIRS[e] / "config.json").is_file()]
    if wanted:
        make_encoder_dirs.main(["--out", str(dirs), "--only", ",".join(wanted)])
    rows = []
    report = {"what": "mos score end to end, fresh process per cell", "machine": machine_info(),
              "load_average_start": load_average(), "threads": args.threads, "batch_size": args.batch_size,
              "clip_seconds": 10.0, "input_rate": 16000, "rows": rows}
    with tempfile.TemporaryDirectory(prefix="mos-encoder-speed-") as tmp:
        pool = wl.generate(Path(tmp), max(1, int(max(CLIPS[e] for e in encoders) * args.clips_scale)))
        for enc in encoders:
            spec = enc if enc in ("conv", "aisfx") else str(dirs / DIRS[enc])
            run = args.work / f"run-{enc}"
            if not (run / "bundle" / "mos.json").is_file():
                t = time.perf_counter()
                make_bundle.main(["--run", str(run), "--audio-encoder", spec, "--head", HEADS.get(enc, "fusion")])
                print(f"{enc}: bundle made in {time.perf_counter() - t:.0f} s", flush=True)
            if args.bundles_only:
                continue
            bundle = load_bundle(run / "bundle")
            n = max(1, int(CLIPS[enc] * args.clips_scale))
            folder = Path(tmp) / f"in-{enc}"
            (folder / "audio").mkdir(parents=True)
            for f in pool.files[:n]:
                (folder / "audio" / f.name).symlink_to(f)
            captions = wl.write_captions(folder / "captions.csv", {k: pool.captions[k] for k in pool.ids[:n]})
            variants = ["fp32"] + (["int8"] if "int8" in bundle.meta.get("variants", {}) else [])
            for variant in variants:
                r = measure(run / "bundle", folder / "audio", captions, args.threads, args.batch_size, variant == "int8")
                model_file = bundle.audio_model(variant)
                row = {"encoder": enc, "variant": variant, "clips": n, "clips_per_s": r["clips_per_s"],
                       "x_realtime": round(10.0 * r["clips_per_s"], 1),
                       "peak_rss_mb": r["peak_rss_mb"], "onnx_mb": round(model_file.stat().st_size / 1e6, 1),
                       "sample_rate": bundle.sample_rate, "load_average": load_average(), "failed": r["failed"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.bundles_only:
            return 0
        if not args.no_peer:
            from mos.bench.peer import peer_missing, run_dnsmos

            missing = peer_missing()
            if missing:
                report["peer"] = {"skipped": missing}
            else:
                n = max(1, int(CLIPS["aisfx"] * args.clips_scale))
                report["peer"] = {k: v for k, v in run_dnsmos(pool.files[:n]).items()
                                  if k in ("name", "clips", "clips_per_s", "rtf", "ms_per_clip")}
                print(json.dumps(report["peer"]), flush=True)
    report["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
