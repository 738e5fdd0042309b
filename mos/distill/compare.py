"""Teacher vs student after `mos distill`: both bundles score the same validation clips end to end
(`mos score`'s pipeline, same threads and batch), timed in interleaved repeats; their metrics on
those clips (levels as in best_metrics.json), the student's share of the teacher's SRCC, the
printed table and distill.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mos.bench.stats import spread
from mos.data.manifest import Item
from mos.distill.teacher import ScoreRun, clip_key, score_items
from mos.files import write_text_atomic

DISTILL_FILE = "distill.json"


def levels_of(scores: dict[str, np.ndarray], items: list[Item], names: list[str], with_caption: bool,
              keep: set[str]) -> dict[str, Any]:
    """Metrics per target and level of the scored `items` whose id is in `keep`."""
    from mos.trainer.validation import level_metrics

    chosen = [it for it in items if it.id in keep]
    pred = np.stack([scores[clip_key(it, with_caption)] for it in chosen])
    true = np.array([[it.targets[n] for n in names] for it in chosen], dtype=np.float64)
    return level_metrics(pred, true, names, chosen)


def mean_srcc(levels: dict[str, Any], level: str = "utterance") -> float:
    return float(np.mean([levels[t][level]["srcc"] for t in levels]))


def compare(teacher_dir: Path, teacher_text: bool, student_dir: Path, student_text: bool, items: list[Item],
            names: list[str], workdir: Path, run: ScoreRun, repeats: int) -> dict[str, Any]:
    """Score `items` with both bundles `repeats` times each, interleaved (teacher, student, teacher,
    ...), so outside load hits both alike. Returns {"teacher": {...}, "student": {...}, ...}."""
    who = {"teacher": (teacher_dir, teacher_text), "student": (student_dir, student_text)}
    rates: dict[str, list[float]] = {k: [] for k in who}
    scores: dict[str, dict[str, np.ndarray]] = {}
    provider = ""
    for _ in range(max(1, repeats)):
        for name, (bundle, with_caption) in who.items():
            got, summary = score_items(bundle, items, with_caption, workdir / f"{name}_scores.csv", run)
            rates[name].append(summary.clips_per_s)
            scores[name] = got
            provider = summary.provider
    # Compare on the clips both scored (a clip either bundle failed on is named by the count).
    both = {it.id for it in items
            if all(clip_key(it, who[k][1]) in scores[k] for k in who)}
    out: dict[str, Any] = {}
    for name, (_, with_caption) in who.items():
        levels = levels_of(scores[name], items, names, with_caption, both)
        out[name] = {"levels": levels, "clips_per_s": spread(rates[name], 1)["median"],
                     "clips_per_s_spread": spread(rates[name], 1)}
    t_srcc, s_srcc = mean_srcc(out["teacher"]["levels"]), mean_srcc(out["student"]["levels"])
    out["srcc_share"] = round(s_srcc / t_srcc, 4) if t_srcc > 0 else None
    t_rate, s_rate = out["teacher"]["clips_per_s"], out["student"]["clips_per_s"]
    out["speedup"] = round(s_rate / t_rate, 2) if t_rate else None
    out["workload"] = {"clips": len(items), "compared": len(both), "threads": run.threads,
                       "batch_size": run.batch_size, "provider": provider, "repeats": max(1, repeats),
                       "what": "the validation clips, scored end to end as `mos score` does (decode, windows, "
                               "captions, model, writing), clips/s the median over the repeats"}
    return out


def format_table(result: dict[str, Any], names: list[str]) -> list[str]:
    """The lines printed at the end of `mos distill`."""
    t, s, w = result["teacher"], result["student"], result["workload"]
    lines = [f"teacher vs student on the validation split ({w['compared']} clips):",
             f"  {'target':<12} {'level':<10} {'model':<8} {'SRCC':>7} {'LCC':>7} {'MSE':>9}"]
    for n in names:
        for level in t["levels"][n]:
            for who, res in (("teacher", t), ("student", s)):
                m = res["levels"][n][level]
                lines.append(f"  {n:<12} {level:<10} {who:<8} {m['srcc']:>7.4f} {m['lcc']:>7.4f} {m['mse']:>9.4f}")
    lines.append(f"speed, end to end on those {w['clips']} clips ({w['provider']}, {w['threads']} threads, batch "
                 f"{w['batch_size']}, median of {w['repeats']}): teacher {t['clips_per_s']:.1f} clips/s, "
                 f"student {s['clips_per_s']:.1f} clips/s"
                 + (f" ({result['speedup']:.1f}x)" if result.get("speedup") else ""))
    share = result.get("srcc_share")
    lines.append("the student keeps " + (f"{100 * share:.1f}%" if share is not None else "- (teacher SRCC <= 0)")
                 + " of the teacher's mean utterance-level SRCC")
    return lines


def write_distill_json(run_dir: Path, content: dict[str, Any]) -> Path:
    from mos.export.bundle_meta import jsonable

    path = run_dir / DISTILL_FILE
    write_text_atomic(path, json.dumps(jsonable(content), indent=2))
    return path
