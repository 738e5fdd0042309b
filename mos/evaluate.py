"""`mos eval PRED TRUTH`: join a prediction file with ratings and report the challenges' metrics."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mos.errors import ManifestError, MosError
from mos.metrics import Metrics, evaluate_levels

__all__ = [
    "EvalSummary",
    "clip_key",
    "read_predictions",
    "evaluate_summary",
    "evaluate_files",
    "format_report",
    "run_eval",
]

# Columns of a `mos score` CSV that are not targets.
_META_COLUMNS = ("path", "caption", "duration", "status", "error")
_LEVELS = ("utterance", "system")


# The AudioMOS 2025 track-1 baseline prints its two targets under these names.
DISPLAY_NAMES = {"overall": "OVERALL QUALITY", "textual": "TEXTUAL ALIGNMENT"}

def clip_key(clip_id: str) -> str:
    """The name predictions and ratings join on: basename without a `.wav` suffix (`dir/x.wav` -> `x`)."""
    name = clip_id.strip().replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.lower().endswith(".wav") else name


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MosError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise MosError(f"{path}: cannot read ({e.strerror or e})") from None


def _parse_value(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"{path}: line {line}: {column} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ManifestError(f"{path}: line {line}: {column} is {text.strip()}")
    return value


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class _Collector:
    """Gathers id -> target -> value, refusing two rows that name the same clip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, dict[str, float]] = {}
        self._seen: dict[str, tuple[int, str]] = {}

    def add(self, line: int, raw_id: str, values: dict[str, float]) -> None:
        raw_id = raw_id.strip()
        if not raw_id:
            raise ManifestError(f"{self.path}: line {line}: empty id")
        key = clip_key(raw_id)
        if key in self._seen:
            first_line, first_id = self._seen[key]
            if first_id == raw_id:
                raise ManifestError(
                    f"{self.path}: line {line}: duplicate id {raw_id!r} (first on line {first_line})"
                )
            raise MosError(
                f"{self.path}: line {line}: id {raw_id!r} and {first_id!r} (line {first_line}) "
                f"both name clip {key!r}"
            )
        self._seen[key] = (line, raw_id)
        self.values[key] = values


def _read_score_csv(path: Path, rows: list[tuple[int, list[str]]], header: list[str]) -> _Collector:
    out = _Collector(path)
    id_col = header.index("id")
    status_col = header.index("status") if "status" in header else None
    targets = [(i, name) for i, name in enumerate(header) if name not in ("id", *_META_COLUMNS) and name]
    if not targets:
        raise ManifestError(f"{path}: no target column besides id/{'/'.join(_META_COLUMNS)}")
    for line, row in rows:
        if len(row) != len(header):
            raise ManifestError(f"{path}: line {line}: {len(row)} fields, header has {len(header)}")
        if status_col is not None and row[status_col].strip() != "ok":
            continue
        values = {name: _parse_value(path, line, name, row[i]) for i, name in targets}
        out.add(line, row[id_col], values)
    return out


def _read_xacle_csv(path: Path, rows: list[tuple[int, list[str]]], header: list[str]) -> _Collector:
    out = _Collector(path)
    id_col, score_col = header.index("wav_file_name"), header.index("pred_score")
    for line, row in rows:
        if len(row) <= max(id_col, score_col):
            raise ManifestError(f"{path}: line {line}: {len(row)} fields, header has {len(header)}")
        out.add(line, row[id_col], {"score": _parse_value(path, line, "pred_score", row[score_col])})
    return out


def _read_answer_txt(path: Path, rows: list[tuple[int, list[str]]]) -> _Collector:
    out = _Collector(path)
    for line, row in rows:
        if len(row) != 3:
            raise ManifestError(f"{path}: line {line}: expected `id,overall,textual`, got {len(row)} fields")
        out.add(
            line,
            row[0],
            {
                "overall": _parse_value(path, line, "overall", row[1]),
                "textual": _parse_value(path, line, "textual", row[2]),
            },
        )
    return out


def _read_score_jsonl(path: Path, text: str) -> _Collector:
    out = _Collector(path)
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: line {line}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict) or "id" not in row:
            raise ManifestError(f"{path}: line {line}: expected a JSON object with an id")
        if "status" in row and row["status"] != "ok":
            continue
        values: dict[str, float] = {}
        for name, value in row.items():
            if name == "id" or name in _META_COLUMNS:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ManifestError(f"{path}: line {line}: {name} {value!r} is not a number")
            values[name] = float(value)
        if not values:
            raise ManifestError(f"{path}: line {line}: no target value")
        out.add(line, str(row["id"]), values)
    return out


def read_predictions(path: Path) -> dict[str, dict[str, float]]:
    """Read a prediction file into clip key (see `clip_key`) -> target -> value.

    Formats, told apart by content: a `mos score` CSV (header with `id`, one column per target,
    optional path/caption/duration/status/error; rows whose status is not "ok" are skipped) or
    its JSONL twin; an XACLE answer CSV `wav_file_name,pred_score` (target "score"); an AudioMOS
    `answer.txt` of headerless `id,overall,textual` lines (targets "overall", "textual").
    """
    path = Path(path)
    text = _read_text(path)
    if text.lstrip().startswith("{"):
        values = _read_score_jsonl(path, text).values
    else:
        try:
            rows = [
                (line, [c.strip() for c in row])
                for line, row in enumerate(csv.reader(io.StringIO(text)), start=1)
                if row and any(c.strip() for c in row)
            ]
        except csv.Error as e:
            raise ManifestError(f"{path}: not a valid CSV ({e})") from None
        if not rows:
            raise ManifestError(f"{path}: no predictions (file is empty)")
        header = rows[0][1]
        if "id" in header:
            values = _read_score_csv(path, rows[1:], header).values
        elif "wav_file_name" in header and "pred_score" in header:
            values = _read_xacle_csv(path, rows[1:], header).values
        elif len(header) == 3 and _is_number(header[1]) and _is_number(header[2]):
            values = _read_answer_txt(path, rows).values
        else:
            raise ManifestError(
                f"{path}: unknown prediction format (expected a `mos score` CSV with an id column, "
                "an XACLE `wav_file_name,pred_score` CSV or AudioMOS `id,overall,textual` lines)"
            )
    if not values:
        raise ManifestError(f"{path}: no predictions (every row was skipped or the file has only a header)")
    return values


@dataclass
class EvalSummary:
    """Metrics per target and level, plus how the prediction and rating files were joined."""

    results: dict[str, dict[str, Metrics]]
    clips: int
    ignored: int
    targets: dict[str, str] = field(default_factory=dict)  # truth target -> prediction target


def _pair_targets(
    pred_path: Path, truth_path: Path, pred_targets: list[str], truth_targets: list[str]
) -> dict[str, str]:
    common = {t: t for t in truth_targets if t in pred_targets}
    if common:
        return common
    if len(pred_targets) == 1 and len(truth_targets) == 1:
        return {truth_targets[0]: pred_targets[0]}
    raise MosError(
        f"{pred_path}: no target in common with {truth_path} "
        f"(predictions: {', '.join(pred_targets) or 'none'}; ratings: {', '.join(truth_targets) or 'none'})"
    )


def evaluate_summary(pred_path: Path, truth_path: Path) -> EvalSummary:
    """`evaluate_files` plus the join's counts (clips rated, predictions for unknown clips)."""
    from mos.data.detect import open_ratings

    pred_path, truth_path = Path(pred_path), Path(truth_path)
    preds = read_predictions(pred_path)
    manifest = open_ratings(truth_path)
    if not manifest.items:
        raise ManifestError(f"{truth_path}: no rated clips")

    truth_keys: dict[str, str] = {}
    for item in manifest.items:
        key = clip_key(item.id)
        if key in truth_keys:
            raise MosError(f"{truth_path}: ids {truth_keys[key]!r} and {item.id!r} both name clip {key!r}")
        truth_keys[key] = item.id

    pred_targets: list[str] = []
    for values in preds.values():
        for name in values:
            if name not in pred_targets:
                pred_targets.append(name)
    truth_targets = manifest.target_names or sorted({t for it in manifest.items for t in it.targets})
    pairing = _pair_targets(pred_path, truth_path, pred_targets, truth_targets)

    results: dict[str, dict[str, Metrics]] = {}
    for truth_t, pred_t in pairing.items():
        items = [it for it in manifest.items if truth_t in it.targets]
        if not items:
            continue
        missing = [it.id for it in items if pred_t not in preds.get(clip_key(it.id), {})]
        if missing:
            raise MosError(
                f"{pred_path}: no prediction for {len(missing)} of {len(items)} clips, e.g. {missing[0]}"
            )
        pred = np.array([preds[clip_key(it.id)][pred_t] for it in items], dtype=np.float64)
        true = np.array([it.targets[truth_t] for it in items], dtype=np.float64)
        try:
            results[truth_t] = evaluate_levels(pred, true, [it.system for it in items])
        except ValueError as e:
            raise MosError(f"{truth_path}: {truth_t}: {e}") from None
    if not results:
        raise ManifestError(f"{truth_path}: no clip has a rating for {', '.join(pairing)}")
    ignored = sum(1 for key in preds if key not in truth_keys)
    return EvalSummary(results=results, clips=len(manifest.items), ignored=ignored, targets=pairing)


def evaluate_files(pred_path: Path, truth_path: Path) -> dict[str, dict[str, Metrics]]:
    """Metrics per target ("score", "overall", ...) and level ("utterance", "system")."""
    return evaluate_summary(pred_path, truth_path).results


def format_report(results: dict[str, dict[str, Metrics]]) -> str:
    """The AudioMOS track-1 baseline's printout: per level, per target, MSE/LCC/SRCC/KTAU to 6 places."""
    lines: list[str] = []
    levels = [lv for lv in _LEVELS if any(lv in per for per in results.values())]
    levels += sorted({lv for per in results.values() for lv in per} - set(levels))
    for level in levels:
        tag = level.upper()
        lines.append(f"=========={tag}===========")
        for target, per_level in results.items():
            m = per_level.get(level)
            if m is None:
                continue
            lines.append(f"======{DISPLAY_NAMES.get(target, target.upper())}=======")
            lines.append(f"[{tag}] Test error= {m.mse:f}")
            lines.append(f"[{tag}] Linear correlation coefficient= {m.lcc:f}")
            lines.append(f"[{tag}] Spearman rank correlation coefficient= {m.srcc:f}")
            lines.append(f"[{tag}] Kendall Tau rank correlation coefficient= {m.ktau:f}")
    return "\n".join(lines)


def run_eval(pred: Path, truth: Path, json_out: Path | None = None) -> str:
    """Evaluate `pred` against `truth`, optionally write the results as JSON, return the report."""
    summary = evaluate_summary(pred, truth)
    report = format_report(summary.results)
    if summary.ignored:
        plural = "" if summary.ignored == 1 else "s"
        report += f"\n(ignored {summary.ignored} prediction{plural} for clips not in {truth})"
    if json_out is not None:
        doc = {
            "predictions": str(pred),
            "truth": str(truth),
            "clips": summary.clips,
            "ignored_predictions": summary.ignored,
            "targets": summary.targets,
            "results": {
                target: {level: m.as_dict() for level, m in per_level.items()}
                for target, per_level in summary.results.items()
            },
        }
        try:
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            raise MosError(f"{json_out}: cannot write ({e.strerror or e})") from None
    return report
