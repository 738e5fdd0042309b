"""Markdown tables from the result files, for benchmarks/README.md (so the README quotes the JSON).

    python benchmarks/summarize.py benchmarks/results/cpu.json [benchmarks/results/cold_start.json ...]
    python benchmarks/summarize.py --compare benchmarks/results/mushra_accuracy_*.json   # one row per model
    python benchmarks/summarize.py --repeats FILES...   # accuracy files run with --repeats R: mean +- SD
    python benchmarks/summarize.py --targets benchmarks/results/cpu.json benchmarks/results/cpu-600.json

Any file of benchmarks/results/ works: the kind of result is read from its fields (a `mos bench`
report, a MUSHRA accuracy run, encoder speed, cold start, DDP, Ray, listener spread, front-end
variants, distillation). Each table starts with the machine the file records, or says that it
records none.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _s(d: dict | None, digits: int = 1) -> str:
    if not d or d.get("median") is None:
        return "-"
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}-{d['max']:.{digits}f})"


def _n(v: float) -> str:
    """A figure as recorded, with at least one decimal (7.0, not 7; 2.993 stays 2.993)."""
    return f"{v:.1f}" if round(v, 1) == v else f"{v:g}"


def _load(v: list | None) -> str:
    return "/".join(f"{x:.2f}" for x in v) if v else "-"


def _run_loads(r: dict) -> list[float]:
    """The 1-minute load averages recorded around each run of a file that records them per run."""
    runs = r.get("runs")
    runs = [x for v in runs.values() for x in v] if isinstance(runs, dict) else runs if isinstance(runs, list) else []
    loads = []
    for x in runs:
        for k in ("load_before", "load_after"):
            v = x.get(k) if isinstance(x, dict) else None
            if v is not None:
                loads.append(v[0] if isinstance(v, list) else v)
    return loads


def machine_line(r: dict) -> str:
    """The machine a result file records, in one line: CPU, cores, platform, versions, load average.

    Files record different fields (a full `mos bench` machine block, or only a CPU count and the
    platform); what is missing is said, never guessed.
    """
    m = r.get("machine")
    if not m:
        return "Machine not recorded."
    if m.get("cpu"):
        flags = ", ".join(m.get("cpu_flags") or [])
        head = f"{m['cpu']}, {m.get('cores')} cores" + (f" ({flags})" if flags else "")
        if m.get("memory_gb"):
            head += f", {m['memory_gb']} GB"
    else:
        n = m.get("cores") or m.get("cpus") or m.get("cpu_threads")
        head = f"CPU model not recorded, {n} CPUs" if n else "CPU model not recorded"
    parts = [head]
    if m.get("platform"):
        parts.append(m["platform"])
    versions = [f"{k} {m[k]}" for k in ("python", "onnxruntime", "torch") if m.get(k)]
    if versions:
        parts.append(", ".join(versions))
    start = m.get("load_average_start") or m.get("loadavg_start") or r.get("load_average_start")
    end = m.get("load_average_end") or m.get("loadavg_end") or r.get("load_average_end")
    runs = _run_loads(r)
    if runs:
        parts.append(f"load average (1 min) {min(runs):.1f}-{max(runs):.1f} around the runs")
    elif start or end:
        parts.append(f"load average (1/5/15 min) {_load(start)} at the start, "
                     + (f"{_load(end)} at the end" if end else "not recorded at the end"))
    elif m.get("loadavg"):
        parts.append(f"load average (1/5/15 min) {_load(m['loadavg'])}")
    else:
        parts.append("load average not recorded")
    return "Machine: " + "; ".join(parts) + "."


def bench_tables(r: dict) -> str:
    w = r["workload"]
    out = [
        machine_line(r),
        "",
        f"Command: `{r['command']}` (run took {r['seconds']:.0f} s).",
        "",
        f"Workload: {w['clips']} {w['kind']} clips of {w.get('clip_seconds')} s at {w.get('sample_rate')} Hz "
        f"({w['audio_seconds']:.0f} s of audio), each with its own ~12-word caption.",
        "",
        "**End to end** (`mos score`'s engine: decode, resample, text, audio, write; clips/s, median (min-max) of "
        f"{r['settings']['repeats']} runs after a warm-up):",
        "",
        "| variant | streams | threads | batch | clips/s | real-time factor | x DNSMOS (same run) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    peer = (r.get("peer") or {}).get("clips_per_s")
    for e in sorted(r["end_to_end"], key=lambda e: (e["variant"], e.get("streams", 1), e["threads"], e["batch_size"])):
        x = f"{e['clips_per_s']['median'] / peer:.1f}x" if peer else "-"
        out.append(f"| {e['variant']} | {e.get('streams', 1)} | {e['threads']} | {e['batch_size']} | {_s(e['clips_per_s'])} | "
                   f"{_s(e['rtf'], 0)}x | {x} |")
    ap = r.get("audio_path")
    if ap:
        out.append(f"| fp32, captions already encoded (no text cost, no writing) | {ap.get('streams', 1)} | {ap['threads']} | "
                   f"{ap['batch_size']} | "
                   f"{_s(ap['clips_per_s'])} | | |")
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
    for n in r.get("notes") or []:
        out.append(f"\nNote: {n}")
    return "\n".join(out)


def targets_table(named: list[tuple[str, dict]]) -> str:
    """The targets each `mos bench` report recorded (docs/design.md's), one row per file and figure."""
    out = ["| figure | target | measured | | where | file |", "|---|---:|---:|---|---|---|"]
    for name, r in named:
        for t in r.get("targets", []):
            met = {True: "met", False: "short", None: "n/a"}[t["met"]]
            meas = "-" if t["measured"] is None else f"{t['measured']:g}"
            out.append(f"| {t['figure']} | {t['target']} | {meas} | {met} | {t.get('where', '')} | `{name}` |")
    return "\n".join(out)


def accuracy_table(r: dict) -> str:
    p = r["protocol"]
    out = [machine_line(r), "", f"{r['clips']} clips, {r['utterances']} utterances x {len(r['systems'])} systems; {p['folds']}-fold "
           f"cross-validation split by utterance (seed {p['seed']}); ours: {p['model']}, at most {p['epochs']} epochs"
           + (f" (patience {p['patience']})" if p.get("patience") else "") +
           f", batch {p['batch_size']}, {p.get('train_crop_seconds', '-')} s training window, {p['weights']}. "
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


def machines_of(results: list[dict], names: list[str]) -> list[str]:
    """One line per machine the files record, naming the files measured on it."""
    by_machine: dict[str, list[str]] = {}
    for n, r in zip(names, results):
        by_machine.setdefault(machine_line(r), []).append(f"`{n}`")
    return [f"{line} ({', '.join(ns)})" for line, ns in by_machine.items()]


def comparison_table(results: list[dict], names: list[str] | None = None) -> str:
    """One row per accuracy file (its model over its seeds), then the DNSMOS rows of the first; then the
    machine each file records."""
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
    if names:
        out += ["", *machines_of(results, names)]
    return "\n".join(out)


def repeats_table(results: list[dict], names: list[str]) -> str:
    """One row per accuracy file run with --repeats R: each repeat's pooled clip SRCC, their mean +- SD
    (sample SD over the repeats), the system SRCC likewise; then the machine each file records."""
    out = ["| predictor | repeats (seeds) | pooled clip SRCC per repeat | clip SRCC mean +- SD | system SRCC mean +- SD |",
           "|---|---|---|---:|---:|"]
    for r in results:
        over = r.get("ours_over_repeats")
        if not over:
            raise SystemExit("summarize --repeats: a file without ours_over_repeats (run with --repeats R)")
        name = next(k for k in r["results"] if k.startswith("ours"))
        per = [x["levels"]["utterance"]["srcc"] for x in over["per_repeat"]]
        seeds = ",".join(str(x["seed"]) for x in over["per_repeat"])
        m, sd = over["mean"], over["sd"]
        out.append(f"| {name} | {over['repeats']} ({seeds}) | {', '.join(f'{v:.3f}' for v in per)} | "
                   f"{m['utterance']['srcc']:.3f} +- {sd['utterance']['srcc']:.3f} | "
                   f"{m['system']['srcc']:.3f} +- {sd['system']['srcc']:.3f} |")
    out += ["", *machines_of(results, names)]
    return "\n".join(out)


def speed_table(r: dict) -> str:
    """benchmarks/encoder_speed.py's rows."""
    out = [machine_line(r), "", f"{r['what']}, "
           f"{r['threads']} threads, batch {r['batch_size']}, {r['clip_seconds']:g} s clips at {r['input_rate']} Hz, "
           f"each with its own caption.", "",
           "| encoder | variant | model rate | clips | clips/s | x real time | x DNSMOS (same run) | peak RSS MB | ONNX MB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    peer = r.get("peer") or {}
    for row in r["rows"]:
        x = f"{row['clips_per_s'] / peer['clips_per_s']:.1f}x" if peer.get("clips_per_s") else "-"
        out.append(f"| {row['encoder']} | {row['variant']} | {row['sample_rate']} | {row['clips']} | "
                   f"{_n(row['clips_per_s'])} | {row['x_realtime']:.0f} | {x} | {row['peak_rss_mb']:.0f} | {row['onnx_mb']:.1f} |")
    if peer.get("clips_per_s"):
        out.append(f"| DNSMOS (peer) | - | 16000 | {peer['clips']} | {peer['clips_per_s']:.2f} | {peer['rtf']:.1f} | 1x | - | - |")
    return "\n".join(out)


def cold_start_table(r: dict) -> str:
    """benchmarks/cold_start.py: one row per checkout and clip rate."""
    out = [machine_line(r), "",
           f"`mos score` on one 10 s clip from process start to exit, {r['repeats']} fresh processes per cell, "
           f"checkouts interleaved; {r.get('note', '')}.", "",
           "| checkout | clip | median wall s (min) | peak RSS MB | `import mos.cli` s |", "|---|---|---:|---:|---:|"]
    for label, res in r["results"].items():
        for rate, x in res.items():
            if isinstance(x, dict):
                out.append(f"| {label} | {rate} | {x['median_wall_s']:.2f} ({x['min_wall_s']:.2f}) | "
                           f"{x['peak_rss_mb']:.0f} | {res.get('import_mos_cli_s', float('nan')):.2f} |")
    return "\n".join(out)


def ddp_table(r: dict) -> str:
    """benchmarks/ddp_train.py: seconds per optimiser step and start-up per layout."""
    w = r["workload"]
    out = [machine_line(r), "",
           f"`mos train` on {w['train_clips']} generated clips of {w['clip_seconds']:g} s ({w['validation_clips']} "
           f"validation), {w['model']}, global batch {w['global_batch']}, {w['epochs']} epochs, {w['repeats']} "
           "interleaved repeats; a step is an epoch's seconds over its steps, epochs 2 and later:", "",
           "| layout | median s/step (min) | median start-up s | step speed vs 1 process x 2 threads |",
           "|---|---:|---:|---:|"]
    for name, x in r["summary"].items():
        out.append(f"| {name} | {x['step_s_median']:.3f} ({x['step_s_min']:.3f}) | {x['startup_s_median']:.1f} | "
                   f"{x['speedup_vs_1x2']:.2f}x |")
    return "\n".join(out)


def ray_table(r: dict) -> str:
    """benchmarks/ray_score.py: steady clips/s and start-up, plain vs --ray, and the paper estimate."""
    w = r["workload"]
    small, large = (str(c) for c in w["clips"])
    names = {"local": "`mos score`", "ray": "`mos score --ray` (local Ray, 1 actor x 1 CPU)",
             "local_1_thread": "`mos score --threads 1`"}
    out = [machine_line(r), "",
           f"{w['clips'][0]} and {w['clips'][1]} generated {w['clip_seconds']:g} s clips ({w['captions']}); steady rate "
           f"= {small} clips / (median wall({large}) - median wall({small})); start-up = the rest of the {small}-clip run:", "",
           f"| command | steady clips/s | start-up s | median wall {small} / {large} clips, s |", "|---|---:|---:|---|"]
    for key, x in r["results"].items():
        out.append(f"| {names.get(key, key)} | {x['steady_clips_per_s']:.1f} | {x['startup_s']:.1f} | "
                   f"{x['median_wall_s'][small]:.1f} / {x['median_wall_s'][large]:.1f} |")
    est = r.get("paper_estimate_clips_per_s")
    if est:
        cells = [f"{k.replace('_cpus', '-CPU')} nodes x {n}: {v:,.0f}" for k, by in est["nodes"].items() for n, v in by.items()]
        out += ["", f"Paper estimate from {est['per_actor_clips_per_s']:.1f} clips/s per actor (not measured; assumes "
                    f"{est['assumes']}), clips/s: " + "; ".join(cells) + "."]
    return "\n".join(out)


def listener_table(r: dict) -> str:
    """benchmarks/listener_spread.py: SRCC per setting and seed; calibration of the predicted spread."""
    def setting(x: dict) -> str:
        d, ln = x.get("distribution", 0), x.get("listener_norm", "off")
        parts = ([f"`--distribution {d}`"] if d else []) + (["`--listener-norm on`"] if ln == "on" else [])
        return " + ".join(parts) or "plain"

    groups: dict[tuple[str, str], list[dict]] = {}
    for x in r["rows"]:
        groups.setdefault((x["data"], setting(x)), []).append(x)
    out = [machine_line(r), "", "Commands: " + "; ".join(f"`{c}`" for c in r.get("commands", [])) + ".", "",
           "| data | setting | seeds | SRCC per seed | mean | 50% coverage (nominal 0.5) | 90% coverage (nominal 0.9) | spread LCC |",
           "|---|---|---|---|---:|---|---|---|"]
    for (data, name), xs in groups.items():
        xs = sorted(xs, key=lambda x: x["seed"])
        srcc = [x.get("oof_clip_srcc", x.get("validation_srcc")) for x in xs]
        cal = [x.get("calibration") for x in xs]

        def col(key: str, fmt: str, cal: list = cal) -> str:
            return " / ".join(format(c[key], fmt) for c in cal) if all(cal) else ""
        out.append(f"| {data} | {name} | {','.join(str(x['seed']) for x in xs)} | {' / '.join(f'{v:.3f}' for v in srcc)} | "
                   f"{sum(srcc) / len(srcc):.3f} | {col('coverage50', '.3f')} | {col('coverage90', '.3f')} | "
                   f"{col('spread_lcc', '.2f')} |")
    out += ["", "SRCC: MUSHRA, pooled out-of-fold clip SRCC; demo, validation SRCC of `score`."]
    return "\n".join(out)


def frontend_table(r: dict) -> str:
    """benchmarks/frontend_variants.py: ms per clip of the front end alone, per variant and cell."""
    variants = list(dict.fromkeys(x["variant"] for x in r["results"]))
    cells: dict[tuple[int, int], dict[str, float]] = {}
    for x in r["results"]:
        cells.setdefault((x["threads"], x["batch_size"]), {})[x["variant"]] = x["ms_per_clip"]
    current = next((v for v in variants if "LogMel" in v), variants[-1])
    out = [machine_line(r), "", f"{r['what']}; ms per clip, medians:", "",
           "| threads, batch | " + " | ".join(variants) + f" | conv / {current} |",
           "|---|" + "---:|" * (len(variants) + 1)]
    for (t, b), by in sorted(cells.items()):
        ratio = by["conv"] / by[current] if "conv" in by and by.get(current) else float("nan")
        out.append(f"| {t}, {b} | " + " | ".join(f"{by[v]:.2f}" if v in by else "-" for v in variants)
                   + f" | {ratio:.2f}x |")
    checks = r.get("checks") or {}
    if checks:
        out += ["", f"Largest log-mel difference from the direct conv in eager, over every variant (a padded batch and "
                    f"each clip alone in eager, and ONNX Runtime): {max(checks.values()):.1e}."]
    return "\n".join(out)


def _levels(x: dict) -> str:
    return " / ".join(f"{v['utterance']['srcc']:.3f}" for v in x["levels"].values())


def _mean_srcc(x: dict) -> float:
    return sum(v["utterance"]["srcc"] for v in x["levels"].values()) / len(x["levels"])


def _best_fp32(bench: dict) -> float:
    return max(c["clips_per_s"]["median"] for c in bench["end_to_end"] if c["variant"] == "fp32")


def _pm(mean: float, sd: float | None, pct: bool = False) -> str:
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3f}")
    return f(mean) + (f" +- {f(sd)}" if sd is not None else "")


def distill_demo_table(r: dict) -> str:
    """benchmarks/distill_demo.py: per student mode, mean +- SD over seeds; then 10 s speed vs DNSMOS."""
    out = [machine_line(r) + f" Goal: {r.get('goal', '-')}.", "",
           "| model | seeds | mean SRCC per seed | mean SRCC, mean +- SD | share of the teacher's, mean +- SD | "
           "speed-up on the 96 validation clips (median of seeds) |",
           "|---|---:|---|---|---|---:|"]
    teacher = [_mean_srcc(x["teacher"]) for x in r["runs"].values()]
    out.append(f"| teacher (aisfx, frozen, pooled head) | | {teacher[0]:.3f} | | | |")
    for name, su in r["summary"].items():
        n = len(su["mean_srcc"])
        out.append(f"| {name} | {n} | {', '.join(f'{v:.3f}' for v in su['mean_srcc'])} | "
                   f"{_pm(su['mean_srcc_mean'], su['mean_srcc_sd'])} | {_pm(su['share_mean'], su['share_sd'], True)} | "
                   f"{su['speedup_median']:.1f}x |")
    benches = r.get("bench_10s") or {}
    if benches:
        out += ["", "| 10 s clips, fp32 end to end (best cell of the grid) | clips/s | DNSMOS, same run | x DNSMOS |",
                "|---|---:|---:|---:|"]
        for who, b in benches.items():
            peer = (b.get("peer") or {}).get("clips_per_s")
            out.append(f"| {who} | {_best_fp32(b):.1f} | {peer if peer else '-'} | "
                       f"{f'{_best_fp32(b) / peer:.1f}x' if peer else '-'} |")
        if {"student", "teacher"} <= set(benches):
            out += ["", f"Student over teacher on 10 s clips: {_best_fp32(benches['student']) / _best_fp32(benches['teacher']):.1f}x."]
    out += ["", "Commands: " + "; ".join(f"`{c}`" for k, c in r.get("commands", {}).items() if "seed1" not in k
                                          and "seed2" not in k) + " (seeds 1 and 2 alike)."]
    return "\n".join(out)


def student_sizes_table(r: dict) -> str:
    """benchmarks/student_sizes.py: each student size's end-to-end speed on 10 s clips."""
    out = [machine_line(r), "",
           "| model | parameters | audio.onnx | fp32 clips/s | int8 clips/s | DNSMOS clips/s (same run) | fp32 x DNSMOS | fp32 x teacher |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, x in r["sizes"].items():
        params = f"{x['parameters']:,}" if x.get("parameters") else "-"
        int8 = f"{x['int8_clips_per_s']:.1f}" if x.get("int8_clips_per_s") else "-"
        out.append(f"| {name} | {params} | {x['audio_onnx_mb']:.1f} MB | {x['fp32_clips_per_s']:.1f} | {int8} | "
                   f"{x['dnsmos_clips_per_s']:.1f} | {x['fp32_over_dnsmos']:.1f}x | {x['over_teacher']:.1f}x |")
    return "\n".join(out)


def distill_mushra_table(r: dict) -> str:
    """benchmarks/distill_mushra.py: pooled out-of-fold figures per model, per seed."""
    out = [machine_line(r) + f" Goal: {r.get('goal', '-')}.", ""]
    for seed, x in r["per_seed"].items():
        params = {k: m.get("parameters") for f in x["per_fold"] for k, m in f["models"].items()}
        out += [f"Seed {seed}:", "",
                "| model | parameters | pooled clip SRCC [95%] | clip LCC | system SRCC | per-fold mean clip SRCC | share of teacher | speed-up, median of folds (per fold) |",
                "|---|---:|---|---:|---:|---:|---:|---|"]
        for name, su in x["summary"].items():
            pooled, ci = x["pooled"][name], x["pooled_clip_and_system_srcc_95"][name]["utterance"]
            share = su.get("share_of_teacher_clip_srcc")
            speed = su.get("speedup_median_over_folds")
            n = params.get(name)
            out.append(f"| {name} | {f'{n:,}' if n else '-'} | {pooled['utterance']['srcc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                       f"{pooled['utterance']['lcc']:.3f} | {pooled['system']['srcc']:.3f} | {su['per_fold_mean_clip_srcc']:.3f} | "
                       f"{f'{100 * share:.1f}%' if share is not None else ''} | "
                       + (f"{speed:.1f}x ({', '.join(f'{v:.1f}' for v in su['speedup_per_fold'])})" if speed else "") + " |")
        out.append("")
    over = r.get("over_seeds")
    if over and len(r["per_seed"]) > 1:
        out += [f"Over seeds {', '.join(r['per_seed'])}:", "",
                "| model | pooled clip SRCC per seed | mean +- SD | share of the teacher's, mean +- SD |", "|---|---|---|---|"]
        for name, o in over.items():
            share = _pm(o["share_mean"], o["share_sd"], True) if "share_mean" in o else ""
            out.append(f"| {name} | {', '.join(f'{v:.3f}' for v in o['clip_srcc'])} | "
                       f"{_pm(o['clip_srcc_mean'], o['clip_srcc_sd'])} | {share} |")
    return "\n".join(out).rstrip()


def kind(r: dict) -> str:
    """Which benchmark wrote a result file, from its fields."""
    if r.get("benchmark") in ("cold_start", "listener_spread"):
        return r["benchmark"]
    if "schema" in r and "end_to_end" in r:
        return "bench"
    if "ours_per_fold_clip_srcc" in r:
        return "accuracy"
    if "per_seed" in r:
        return "distill_mushra"
    if "bench_10s" in r:
        return "distill_demo"
    if "sizes" in r:
        return "student_sizes"
    if "paper_estimate_clips_per_s" in r:
        return "ray"
    if "checks" in r:
        return "frontend"
    if "summary" in r and "runs" in r:
        return "ddp"
    if "rows" in r:
        return "encoder_speed"
    raise SystemExit(f"summarize: no table for a result with fields {sorted(r)}")


TABLES = {"bench": bench_tables, "accuracy": accuracy_table, "encoder_speed": speed_table, "cold_start": cold_start_table,
          "ddp": ddp_table, "ray": ray_table, "listener_spread": listener_table, "frontend": frontend_table,
          "distill_demo": distill_demo_table, "distill_mushra": distill_mushra_table, "student_sizes": student_sizes_table}


def _command(command: str, path: str) -> str:
    """The recorded command with its `--out` pointing at the file it is read from (the file may have been
    written elsewhere and copied into benchmarks/results/)."""
    words = command.split()
    if "--out" in words and words.index("--out") + 1 < len(words):
        words[words.index("--out") + 1] = path
    return " ".join(words)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--compare"]:
        print(f"<!-- from {', '.join(argv[1:])} -->")
        print(comparison_table([json.loads(Path(a).read_text()) for a in argv[1:]], [Path(a).name for a in argv[1:]]))
        return 0
    if argv[:1] == ["--repeats"]:
        print(f"<!-- from {', '.join(argv[1:])} -->")
        print(repeats_table([json.loads(Path(a).read_text()) for a in argv[1:]], [Path(a).name for a in argv[1:]]))
        return 0
    if argv[:1] == ["--targets"]:
        print(f"<!-- from {', '.join(argv[1:])} -->")
        print(targets_table([(Path(a).name, json.loads(Path(a).read_text())) for a in argv[1:]]))
        return 0
    for arg in argv:
        r = json.loads(Path(arg).read_text())
        if "schema" in r and "command" in r:
            r["command"] = _command(r["command"], arg)
        print(f"<!-- from {arg} -->")
        print(TABLES[kind(r)](r))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
