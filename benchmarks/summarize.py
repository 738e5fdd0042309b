"""Markdown tables from the result files, for benchmarks/README.md (so the README quotes the JSON).

    python benchmarks/summarize.py benchmarks/results/cpu.json [benchmarks/results/mushra_accuracy.json]
    python benchmarks/summarize.py --compare benchmarks/results/mushra_accuracy_*.json   # one row per model
    python benchmarks/summarize.py benchmarks/results/encoders_cpu.json                 # speed per encoder
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _s(d: dict | None, digits: int = 1) -> str:
    if not d or d.get("median") is None:
        return "-"
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}-{d['max']:.{digits}f})"


def bench_tables(r: dict) -> str:
    m = r["machine"]
    w = r["workload"]
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m.get('cpu_flags') or [])}), {m.get('memory_gb')} GB; "
        f"Python {m['python']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}, numpy {m['numpy']}. "
        f"Load average (1/5/15 min) {m.get('load_average_start')} at the start, {m.get('load_average_end')} at the end. "
        f"Run took {r['seconds']:.0f} s; created {r['created']}.",
        "",
        f"Workload: {w['clips']} {w['kind']} clips of {w.get('clip_seconds')} s at {w.get('sample_rate')} Hz "
        f"({w['audio_seconds']:.0f} s of audio), each with its own ~12-word caption.",
        "",
        "**End to end** (`mos score`'s engine: decode, resample, text, audio, write; clips/s, median (min-max) of "
        f"{r['settings']['repeats']} runs after a warm-up):",
        "",
        "| variant | streams | threads | batch | clips/s | real-time factor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for e in sorted(r["end_to_end"], key=lambda e: (e["variant"], e.get("streams", 1), e["threads"], e["batch_size"])):
        out.append(f"| {e['variant']} | {e.get('streams', 1)} | {e['threads']} | {e['batch_size']} | {_s(e['clips_per_s'])} | "
                   f"{_s(e['rtf'], 0)}x |")
    ap = r.get("audio_path")
    if ap:
        out.append(f"| fp32, captions already encoded (no text cost, no writing) | {ap.get('streams', 1)} | {ap['threads']} | "
                   f"{ap['batch_size']} | "
                   f"{_s(ap['clips_per_s'])} | |")
    ma = r["model_alone"]
    names = [b["name"] for b in ma["backends"]]
    out += ["", f"**Model alone** (audio model on pre-decoded {ma['clip_seconds']} s batches, caption features "
                "pre-encoded; clips/s, median (min-max)):", "",
            "| threads | batch | " + " | ".join(names) + " | ORT fp32 / eager | ORT int8 / eager |",
            "|---:|---:|" + "---:|" * (len(names) + 2)]
    cells: dict = {}
    for row in ma["rows"]:
        cells.setdefault((row["threads"], row["batch_size"]), {})[row["backend"]] = row
    ratios = {(x["backend"], x["threads"], x["batch_size"]): x["ratio"] for x in ma.get("ratios", [])}
    for (t, b), by in sorted(cells.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        rs = [ratios.get((n, t, b)) for n in ("ort-fp32", "ort-int8")]
        out.append(f"| {t} | {b} | " + " | ".join(_s(by[n]["clips_per_s"]) if n in by else "-" for n in names)
                   + " | " + " | ".join(f"{x:.2f}x" if x else "-" for x in rs) + " |")
    if ma.get("max_abs_diff_vs_ort_fp32"):
        out += ["", "Same model in every backend: max |score - ORT fp32| on one batch: "
                + ", ".join(f"{k} {v:.1e}" for k, v in ma["max_abs_diff_vs_ort_fp32"].items()) + "."]
    out += ["", "**Latency**, one clip at a time through the engine (decode + resample + its own caption + audio):", "",
            "| variant | threads | clips | p50 ms | p95 ms | min-max ms |", "|---|---:|---:|---:|---:|---:|"]
    for x in r.get("latency", []):
        out.append(f"| {x['variant']} | {x['threads']} | {x['clips']} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} | "
                   f"{x['min_ms']:.1f}-{x['max_ms']:.1f} |")
    for prof in r.get("profile") or []:
        out += ["", f"**Where a clip's time goes** ({prof['variant']}, {prof['threads']} threads, batch {prof['batch_size']}, "
                    f"{prof['clips']} clips; each stage timed alone; the audio model split by ONNX Runtime's profiler):", "",
                "| stage | ms per clip | share |", "|---|---:|---:|"]
        total = prof["sum_ms_per_clip"]
        for k, v in prof["ms_per_clip"].items():
            out.append(f"| {k} | {v:.2f} | {100 * v / total:.0f}% |")
        out.append(f"| **sum** | **{total:.2f}** | |")
    p = r.get("peer") or {}
    if p.get("clips_per_s"):
        out += ["", f"**Peer**: {p['name']}: {p['clips_per_s']:.2f} clips/s on {p['clips']} of the same clips "
                    f"(median {p['ms_per_clip']['median']:.0f} ms per 10 s clip, decode and resample included)."]
    mem = (r.get("memory") or {}).get("rows") or []
    if mem:
        out += ["", f"**Memory**: `mos score` in a fresh process on {r['memory']['clip_seconds']} s clips, "
                    "one distinct caption per file:", "",
                "| files | peak RSS MB | growth vs first | RSS at 10% / 50% / 100% of the run, MB | clips/s |",
                "|---:|---:|---:|---:|---:|"]
        for x in mem:
            out.append(f"| {x['files']:,} | {x['peak_rss_mb']:.0f} | {x['growth_mb_vs_first']:+.0f} | "
                       f"{x.get('rss_mb_at_10pct', 0):.0f} / {x.get('rss_mb_at_50pct', 0):.0f} / {x.get('rss_mb_at_100pct', 0):.0f} | "
                       f"{x['clips_per_s']:.0f} |")
    out += ["", "**Against the project's targets** (docs/design.md; as recorded in the report when it was run; "
                "best cell of the grid for each figure):", "",
            "| figure | target | measured | | where |", "|---|---:|---:|---|---|"]
    for t in r.get("targets", []):
        met = {True: "met", False: "**short**", None: "n/a"}[t["met"]]
        meas = "-" if t["measured"] is None else f"{t['measured']:g}"
        out.append(f"| {t['figure']} | {t['target']} | {meas} | {met} | {t.get('where', '')} |")
    for n in r.get("notes") or []:
        out.append(f"\nNote: {n}")
    return "\n".join(out)


def accuracy_table(r: dict) -> str:
    p = r["protocol"]
    out = [f"{r['clips']} clips, {r['utterances']} utterances x {len(r['systems'])} systems; {p['folds']}-fold "
           f"cross-validation split by utterance (seed {p['seed']}); ours: {p['model']}, {p['epochs']} epochs, "
           f"batch {p['batch_size']}, {p.get('train_crop_seconds', '-')} s training crops, {p['weights']}. "
           f"Total {r['seconds']['total']:.0f} s.", "",
           "| predictor | clip SRCC [95% interval] | clip LCC | system SRCC [95% interval] | system LCC |",
           "|---|---:|---:|---:|---:|"]
    cis = r.get("bootstrap_over_utterances", {})
    for name, m in r["results"].items():
        u, s = m["utterance"], m.get("system", {})
        ci = cis.get(name)
        cu = f" [{ci['clip_srcc_95'][0]:.2f}, {ci['clip_srcc_95'][1]:.2f}]" if ci else ""
        cs = f" [{ci['system_srcc_95'][0]:.2f}, {ci['system_srcc_95'][1]:.2f}]" if ci else ""
        out.append(f"| {name} | {u['srcc']:.3f}{cu} | {u['lcc']:.3f} | {s.get('srcc', float('nan')):.3f}{cs} | "
                   f"{s.get('lcc', float('nan')):.3f} |")
    pf = r["ours_per_fold_clip_srcc"]
    dn = [f.get("dnsmos_ovrl_metrics", {}).get("utterance", {}).get("srcc") for f in r["folds"]]
    out += ["", "Per fold, clip SRCC on the 32 held-out clips: ours " + ", ".join(f"{v:.3f}" for v in pf["values"])
            + f" (mean {pf['mean']:.3f}, sd {pf['std']:.3f})"
            + ("; DNSMOS ovrl " + ", ".join(f"{v:.3f}" for v in dn if v is not None) if any(v is not None for v in dn) else "")
            + "."]
    return "\n".join(out)


def comparison_table(results: list[dict]) -> str:
    """One row per accuracy file (its model over its seeds), then the DNSMOS rows of the first."""
    out = ["| predictor | seeds | pooled clip SRCC per seed | mean (sd) | seed-0 95% interval | system SRCC mean |",
           "|---|---|---|---:|---:|---:|"]
    for r in results:
        name = next(k for k in r["results"] if k.startswith("ours"))
        over = r.get("ours_over_seeds") or {
            "seeds": [r["protocol"]["seed"]],
            "utterance_srcc": {"values": [r["results"][name]["utterance"]["srcc"]], "std": 0.0},
            "system_srcc": {"values": [r["results"][name]["system"]["srcc"]]}}
        u, sy = over["utterance_srcc"], over["system_srcc"]
        mean = sum(u["values"]) / len(u["values"])
        ci = r.get("bootstrap_over_utterances", {}).get(name, {}).get("clip_srcc_95")
        out.append(f"| {name} | {','.join(str(x) for x in over['seeds'])} | "
                   f"{', '.join(f'{v:.3f}' for v in u['values'])} | {mean:.3f} ({u.get('std', 0.0):.3f}) | "
                   f"{f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '-'} | "
                   f"{sum(sy['values']) / len(sy['values']):.3f} |")
    first = results[0]
    for name, m in first["results"].items():
        if not name.startswith("ours"):
            ci = first.get("bootstrap_over_utterances", {}).get(name, {}).get("clip_srcc_95")
            out.append(f"| {name} (zero-shot) | - | {m['utterance']['srcc']:.3f} | {m['utterance']['srcc']:.3f} | "
                       f"{f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '-'} | {m['system']['srcc']:.3f} |")
    return "\n".join(out)


def speed_table(r: dict) -> str:
    """benchmarks/encoder_speed.py's rows."""
    m = r["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}. {r['what']}, "
           f"{r['threads']} threads, batch {r['batch_size']}, {r['clip_seconds']:g} s clips at {r['input_rate']} Hz, "
           f"each with its own caption. Load average {r.get('load_average_start')} at the start, "
           f"{r.get('load_average_end')} at the end.", "",
           "| encoder | variant | model rate | clips | clips/s | x real time | peak RSS MB | ONNX MB |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        out.append(f"| {row['encoder']} | {row['variant']} | {row['sample_rate']} | {row['clips']} | "
                   f"{row['clips_per_s']:.2f} | {row['x_realtime']:.1f} | {row['peak_rss_mb']:.0f} | {row['onnx_mb']:.1f} |")
    peer = r.get("peer") or {}
    if peer.get("clips_per_s"):
        out.append(f"| DNSMOS (peer) | - | 16000 | {peer['clips']} | {peer['clips_per_s']:.2f} | {peer['rtf']:.1f} | - | - |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--compare"]:
        print(f"<!-- from {', '.join(argv[1:])} -->")
        print(comparison_table([json.loads(Path(a).read_text()) for a in argv[1:]]))
        return 0
    for arg in argv:
        r = json.loads(Path(arg).read_text())
        print(f"<!-- from {arg} -->")
        print(accuracy_table(r) if "protocol" in r else speed_table(r) if "rows" in r else bench_tables(r))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
