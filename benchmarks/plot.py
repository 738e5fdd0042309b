"""Throughput vs batch size per backend, from a `mos bench` JSON report.

    python benchmarks/plot.py benchmarks/results/cpu.json [--out benchmarks/results/cpu.png]

Left: the model alone (audio model on pre-decoded batches), one line per backend at each thread
count. Right: end to end (`mos score`: decode, resample, text, audio, write) per variant.
Points are medians; bars span min to max over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _series(rows, key_name, threads_key="threads"):
    series: dict[tuple[str, object], list[tuple[int, float, float, float]]] = {}
    for r in rows:
        s = r["clips_per_s"]
        series.setdefault((r[key_name], r.get(threads_key)), []).append((r["batch_size"], s["median"], s["min"], s["max"]))
    return {k: sorted(v) for k, v in series.items()}


def plot(report: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=False)
    styles = {1: ":", 2: "-", 4: "--", 8: "-.", 0: "-", None: "-"}
    colours = {"torch-eager": "tab:gray", "torch-eager-cuda": "tab:gray", "ort-fp32": "tab:blue",
               "ort-fp32-cuda": "tab:blue", "ort-int8": "tab:orange", "ort-fp16-cuda": "tab:green",
               "fp32": "tab:blue", "int8": "tab:orange", "fp16": "tab:green"}
    panels = [
        (axes[0], _series(report.get("model_alone", {}).get("rows", []), "backend"),
         f"model alone ({report.get('model_alone', {}).get('clip_seconds', '?')} s clips, text pre-encoded)"),
        (axes[1], _series(report.get("end_to_end", []), "variant"), "end to end (mos score)"),
    ]
    for ax, series, title in panels:
        for (name, threads), pts in sorted(series.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
            label = name + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label,
                        linestyle=styles.get(threads, "-"), color=colours.get(name))
        ax.set_xscale("log", base=2)
        xs_all = sorted({p[0] for pts in series.values() for p in pts})
        if xs_all:
            ax.set_xticks(xs_all)
            ax.set_xticklabels([str(x) for x in xs_all])
        ax.set_xlabel("batch size")
        ax.set_ylabel("clips/s (10 s clips)" if ax is axes[0] else "clips/s")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    # the end-to-end targets this run was checked against (the report's "targets"; docs/design.md)
    top = 0.0
    for t in report.get("targets", []):
        for variant in ("fp32", "int8"):
            if t["figure"] == f"end to end {variant}, clips/s" and isinstance(t["target"], (int, float)):
                axes[1].axhline(t["target"], color=colours[variant], alpha=0.35, linewidth=1)
                axes[1].text(axes[1].get_xlim()[0], t["target"], f" target {variant}", va="bottom", fontsize=7,
                             color=colours[variant])
                top = max(top, t["target"])
    if top:
        axes[1].set_ylim(0, max(axes[1].get_ylim()[1], 1.075 * top))
    m = report.get("machine", {})
    where = m.get("gpu") if report.get("device") == "cuda" else f"{m.get('cpu')}, {m.get('cores')} cores"
    fig.suptitle(f"mos bench: {where}; onnxruntime {m.get('onnxruntime')}, torch {m.get('torch')}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: the report's path with .png)")
    args = p.parse_args(argv)
    report = json.loads(args.report.read_text())
    out = plot(report, args.out or args.report.with_suffix(".png"))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
