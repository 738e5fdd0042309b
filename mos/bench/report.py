"""The bench report as rich tables (what `mos bench` prints)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mos.bench.stats import fmt_spread


def _met(value: bool | None) -> str:
    return {True: "[green]met[/green]", False: "[red]short[/red]", None: "[yellow]n/a[/yellow]"}[value]


def print_report(report: dict[str, Any], console: Console) -> None:
    m = report.get("machine", {})
    w = report.get("workload", {})
    b = report.get("bundle", {})
    console.print(
        f"[bold]mos bench[/bold] on {m.get('cpu')} ({m.get('cores')} cores"
        + (f", GPU {m['gpu']}" if m.get("gpu") and report.get("device") == "cuda" else "")
        + f"), onnxruntime {m.get('onnxruntime')}, torch {m.get('torch') or '-'}, numpy {m.get('numpy')}; "
        f"load {m.get('load_average_start')} -> {m.get('load_average_end')}",
        highlight=False,
    )
    clip_s = f"{w['clip_seconds']:g} s" if w.get("clip_seconds") else "as found"
    console.print(
        f"workload: {w.get('clips')} {w.get('kind')} clips ({clip_s}, {w.get('audio_seconds')} s of audio), "
        f"bundle {b.get('path')} (targets {', '.join(b.get('targets', []))}; text {b.get('text_encoder') or 'none'}; "
        f"variants {', '.join(b.get('variants') or []) or 'none'})",
        highlight=False,
    )

    t = Table(title="End to end (mos score: decode, resample, text, audio, write)", title_justify="left")
    for col in ("variant", "provider", "streams", "threads", "batch", "clips/s median (min-max)", "real-time factor"):
        t.add_column(col, justify="right" if col not in ("variant", "provider") else "left")
    for r in report.get("end_to_end", []):
        t.add_row(r["variant"], r["provider"].replace("ExecutionProvider", ""), str(r.get("streams", 1)),
                  str(r["threads"]), str(r["batch_size"]), fmt_spread(r["clips_per_s"], 1), fmt_spread(r["rtf"], 0) + "x")
    ap = report.get("audio_path")
    if ap:
        t.add_row("fp32, captions cached", "", str(ap.get("streams", 1)), str(ap["threads"]), str(ap["batch_size"]),
                  fmt_spread(ap["clips_per_s"], 1), "")
    console.print(t)

    ma = report.get("model_alone") or {}
    if ma.get("rows"):
        t = Table(title=f"Model alone (audio model on pre-decoded {ma.get('clip_seconds')} s batches, text pre-encoded), clips/s",
                  title_justify="left")
        backends = [x["name"] for x in ma.get("backends", [])]
        t.add_column("threads", justify="right")
        t.add_column("batch", justify="right")
        for name in backends:
            t.add_column(name, justify="right")
        eager = next((n for n in backends if n.startswith("torch-eager")), None)
        if eager:
            t.add_column("ORT/eager", justify="right")
        cells: dict[tuple[Any, Any], dict[str, Any]] = {}
        for r in ma["rows"]:
            cells.setdefault((r["threads"] if r["threads"] is not None else "-", r["batch_size"]), {})[r["backend"]] = r
        ratios = {(x["backend"], x["threads"], x["batch_size"]): x["ratio"] for x in ma.get("ratios", [])}
        for (th, bs), by in cells.items():
            row = [str(th), str(bs)] + [fmt_spread(by[n]["clips_per_s"], 1) if n in by else "-" for n in backends]
            if eager:
                parts = [f"{ratios[(n, by[n]['threads'], bs)]:.2f}x" for n in backends
                         if n != eager and n in by and (n, by[n]["threads"], bs) in ratios]
                row.append(" / ".join(parts) or "-")
            t.add_row(*row)
        console.print(t)
        if ma.get("max_abs_diff_vs_ort_fp32"):
            console.print("same model check, max |score - ORT fp32| on one batch: "
                          + ", ".join(f"{k} {v:.2g}" for k, v in ma["max_abs_diff_vs_ort_fp32"].items()), highlight=False)

    lat = report.get("latency") or []
    if lat:
        t = Table(title="Latency, one clip at a time through the engine (decode + resample + caption + audio)",
                  title_justify="left")
        for col in ("variant", "threads", "clips", "p50 ms", "p95 ms", "min-max ms"):
            t.add_column(col, justify="right" if col != "variant" else "left")
        for r in lat:
            t.add_row(r["variant"], str(r["threads"]), str(r["clips"]), f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
                      f"{r['min_ms']:.1f}-{r['max_ms']:.1f}")
        console.print(t)

    for prof in report.get("profile") or []:
        t = Table(title=f"Where a clip's time goes ({prof['variant']}, {prof['threads']} threads, batch "
                        f"{prof['batch_size']}; each stage alone, ms per clip)", title_justify="left")
        t.add_column("stage")
        t.add_column("ms/clip", justify="right")
        t.add_column("share", justify="right")
        total = prof.get("sum_ms_per_clip") or 1.0
        for stage, v in prof["ms_per_clip"].items():
            t.add_row(stage, f"{v:.2f}", f"{100 * v / total:.0f}%")
        t.add_row("[bold]sum (stages run one after another)[/bold]", f"{total:.2f}", "")
        console.print(t)

    peer = report.get("peer") or {}
    if peer.get("clips_per_s"):
        console.print(f"peer: {peer['name']}: {peer['clips_per_s']:.2f} clips/s on {peer['clips']} clips "
                      f"(median {peer['ms_per_clip']['median']:.0f} ms per clip)", highlight=False)
    elif peer.get("skipped"):
        console.print(f"peer: skipped ({peer['skipped']})", highlight=False)
    second = report.get("peer_bundle") or {}
    if second.get("clips_per_s"):
        console.print(f"peer: {second['name']}: {second['clips_per_s']:.2f} clips/s on {second['clips']} clips "
                      f"(median {second['ms_per_clip']['median']:.0f} ms per clip; mean {second['target']} "
                      f"{second['score_mean']})", highlight=False)

    mem = (report.get("memory") or {}).get("rows") or []
    if mem:
        t = Table(title=f"Memory: mos score in a fresh process ({report['memory']['clip_seconds']:g} s clips)",
                  title_justify="left")
        for col in ("files", "peak RSS MB", "growth MB", "RSS at 10% / 50% / 100%", "clips/s"):
            t.add_column(col, justify="right")
        for r in mem:
            t.add_row(f"{r['files']:,}", f"{r['peak_rss_mb']:.0f}", f"{r['growth_mb_vs_first']:+.0f}",
                      f"{r.get('rss_mb_at_10pct', 0):.0f} / {r.get('rss_mb_at_50pct', 0):.0f} / {r.get('rss_mb_at_100pct', 0):.0f}",
                      f"{r['clips_per_s']:.0f}")
        console.print(t)

    tg = report.get("targets") or []
    if tg:
        t = Table(title="Against the project's targets (docs/design.md)", title_justify="left")
        for col in ("figure", "target", "measured", "", "where"):
            t.add_column(col)
        for r in tg:
            meas = "-" if r["measured"] is None else f"{r['measured']:g}"
            t.add_row(r["figure"], str(r["target"]), meas, _met(r["met"]), r.get("where") or "")
        console.print(t)
    for n in report.get("notes") or []:
        console.print(f"note: {n}", highlight=False)
