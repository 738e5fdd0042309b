"""`mos eval PRED RATINGS`: join a prediction file with ratings and report the challenges' metrics."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mos.data.keys import KeyIndex, Match, clip_key, match_ids
from mos.distribution import BandCalibration, Calibration, calibration, calibration_by_band, spread_column
from mos.data.manifest import Item, Manifest
from mos.data.table import ColumnMap, csv_records, parse_column_spec, parse_number, read_text
from mos.errors import ManifestError, MosError
from mos.metrics import Metrics, compute_metrics, evaluate_levels, system_level

__all__ = [
    "EvalSummary",
    "PredictionRow",
    "Predictions",
    "read_predictions",
    "evaluate_summary",
    "evaluate_files",
    "format_report",
    "run_eval",
]

# Columns of a `mos score` file or a trainer prediction file that are not targets (nor are `true_*`).
META_COLUMNS = ("id", "path", "caption", "duration", "status", "error", "system", "group", "fold")
_LEVELS = ("utterance", "system")
QUANTILE = re.compile(r"(.+)_q(\d\d)")  # a quantile column of `mos score --quantiles`: score_q10

# The AudioMOS 2025 track-1 baseline prints its two targets under these names.
DISPLAY_NAMES = {"overall": "OVERALL QUALITY", "textual": "TEXTUAL ALIGNMENT"}


def _is_target(column: str) -> bool:
    return bool(column) and column not in META_COLUMNS and not column.startswith("true_")



def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


@dataclass(frozen=True)
class PredictionRow:
    """One prediction: the id as written, its line, target -> value, and the audio path when given."""

    id: str
    line: int
    values: dict[str, float]
    path: str | None = None
    truth: dict[str, float] = field(default_factory=dict)


@dataclass
class Predictions:
    """The rows of a prediction file (rows whose status is not "ok" left out).

    `with_truth`: the file has `true_<target>` columns, as the trainer's prediction files for a
    split do; it predicts part of the rated clips on purpose, and only those are evaluated.
    """

    source: Path
    rows: list[PredictionRow] = field(default_factory=list)
    with_truth: bool = False
    _keys: dict[str, PredictionRow] = field(default_factory=dict, repr=False)

    def add(self, line: int, raw_id: str, values: dict[str, float], path: str | None = None,
            truth: dict[str, float] | None = None) -> None:
        """Append a row, refusing an empty id and two rows that name the same clip."""
        raw_id = raw_id.strip()
        if not raw_id:
            raise ManifestError(f"{self.source}: line {line}: empty id")
        key = clip_key(raw_id)
        first = self._keys.get(key)
        if first is not None:
            if first.id == raw_id:
                raise ManifestError(f"{self.source}: line {line}: duplicate id {raw_id!r} (first on line {first.line})")
            raise MosError(
                f"{self.source}: line {line}: id {raw_id!r} and {first.id!r} (line {first.line}) both name clip {key!r}"
            )
        row = PredictionRow(raw_id, line, values, path or None, truth or {})
        self._keys[key] = row
        self.rows.append(row)

    @property
    def columns(self) -> list[str]:
        """Every value column, in order of appearance."""
        out: list[str] = []
        for row in self.rows:
            out += [name for name in row.values if name not in out]
        return out

    @property
    def targets(self) -> list[str]:
        """The predicted targets: the value columns that are not the spread (`<t>_std`) or a
        quantile (`<t>_q10`) of another column."""
        columns = self.columns

        def derived(column: str) -> bool:
            quantile = QUANTILE.fullmatch(column)
            return (column.endswith("_std") and column[: -len("_std")] in columns) or bool(
                quantile and quantile.group(1) in columns)

        return [c for c in columns if not derived(c)]

    def by_key(self) -> dict[str, dict[str, float]]:
        """Clip key (`mos.data.keys.clip_key`) -> target -> value."""
        return {clip_key(r.id): r.values for r in self.rows}


def _read_id_csv(path: Path, records: list[tuple[int, list[str]]]) -> Predictions:
    """A `mos score` CSV or a trainer prediction file: id, targets, and meta/true_* columns."""
    header = [c.strip() for c in records[0][1]]
    id_col = header.index("id")
    path_col = header.index("path") if "path" in header else None
    status_col = header.index("status") if "status" in header else None
    targets = [(i, name) for i, name in enumerate(header) if _is_target(name)]
    truths = [(i, name[len("true_"):]) for i, name in enumerate(header) if name.startswith("true_")]
    if not targets:
        raise ManifestError(f"{path}: no target column besides {'/'.join(META_COLUMNS)} and true_*")
    out = Predictions(path, with_truth=bool(truths))
    for line, row in records[1:]:
        if len(row) != len(header):
            raise ManifestError(f"{path}: line {line}: {len(row)} fields, header has {len(header)}")
        if status_col is not None and row[status_col].strip() != "ok":
            continue
        values = {name: parse_number(row[i], f"{path}: line {line}", name) for i, name in targets}
        truth = {name: parse_number(row[i], f"{path}: line {line}", f"true_{name}") for i, name in truths if row[i].strip()}
        out.add(line, row[id_col], values, row[path_col].strip() if path_col is not None else None, truth)
    return out


def _read_xacle_csv(path: Path, records: list[tuple[int, list[str]]]) -> Predictions:
    header = [c.strip() for c in records[0][1]]
    out = Predictions(path)
    id_col, score_col = header.index("wav_file_name"), header.index("pred_score")
    for line, row in records[1:]:
        if len(row) <= max(id_col, score_col):
            raise ManifestError(f"{path}: line {line}: {len(row)} fields, header has {len(header)}")
        out.add(line, row[id_col], {"score": parse_number(row[score_col], f"{path}: line {line}", "pred_score")})
    return out


def _read_answer_txt(path: Path, records: list[tuple[int, list[str]]]) -> Predictions:
    out = Predictions(path)
    for line, row in records:
        if len(row) != 3:
            raise ManifestError(f"{path}: line {line}: expected `id,overall,textual`, got {len(row)} fields")
        out.add(line, row[0], {"overall": parse_number(row[1], f"{path}: line {line}", "overall"),
                               "textual": parse_number(row[2], f"{path}: line {line}", "textual")})
    return out


def _read_jsonl(path: Path, text: str) -> Predictions:
    out = Predictions(path)
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
            if not _is_target(name):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ManifestError(f"{path}: line {line}: {name} {value!r} is not a number")
            values[name] = float(value)
        if not values:
            raise ManifestError(f"{path}: line {line}: no target value")
        given = row.get("path")
        out.add(line, str(row["id"]), values, given if isinstance(given, str) else None)
    return out


def read_predictions(path: Path) -> Predictions:
    """Read a prediction file. Formats, told apart by content:

    - a `mos score` CSV (`id`, one column per target, path/caption/duration/status/error; rows
      whose status is not "ok" are skipped) or its JSONL twin;
    - a trainer's `val_predictions.csv`/`oof_predictions.csv` (`id`, targets, `true_*`, and
      optionally system/group/fold, none of which are targets);
    - an XACLE answer CSV `wav_file_name,pred_score` (target "score");
    - an AudioMOS `answer.txt` of headerless `id,overall,textual` lines.
    """
    path = Path(path)
    text = read_text(path)
    if text.lstrip().startswith("{"):
        preds = _read_jsonl(path, text)
    else:
        records = [(line, [c.strip() for c in row]) for line, row in csv_records(text, path)]
        if not records:
            raise ManifestError(f"{path}: no predictions (file is empty)")
        header = records[0][1]
        if "id" in header:
            preds = _read_id_csv(path, records)
        elif "wav_file_name" in header and "pred_score" in header:
            preds = _read_xacle_csv(path, records)
        elif len(header) == 3 and _is_number(header[1]) and _is_number(header[2]):
            preds = _read_answer_txt(path, records)
        else:
            raise ManifestError(
                f"{path}: unknown prediction format (expected a `mos score` CSV or a trainer prediction "
                "file with an id column, an XACLE `wav_file_name,pred_score` CSV or AudioMOS `id,overall,textual` lines)"
            )
    if not preds.rows:
        raise ManifestError(f"{path}: no predictions (every row was skipped or the file has only a header)")
    return preds


@dataclass
class EvalSummary:
    """Metrics per target and level, plus how the prediction and rating files were joined.

    `joined` counts clips by how their prediction was found: "id" (same id), "path suffix"
    (one id is a path suffix of the other, unambiguously) or "path" (the prediction's audio
    path is the rated file). `system_truth` says where system-level truth came from.
    A trainer's prediction file (`true_*` columns) is evaluated on its own clips only.
    """

    results: dict[str, dict[str, Metrics]]
    clips: int  # rated clips evaluated
    ignored: int
    targets: dict[str, str] = field(default_factory=dict)  # truth target -> prediction target
    joined: dict[str, int] = field(default_factory=dict)
    system_truth: dict[str, str] = field(default_factory=dict)
    rated: int = 0  # rated clips in the ratings file (more than `clips` for a trainer's split file)
    # truth target -> how the predicted spread (`<target>_std`) describes single listeners' ratings
    calibration: dict[str, Calibration] = field(default_factory=dict)
    # truth target -> the same per third of its scale, by each clip's true score (low, mid, high)
    calibration_bands: dict[str, list[BandCalibration]] = field(default_factory=dict)


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


def _join(preds: Predictions, items: list[Item]) -> tuple[list[PredictionRow | None], list[Match], dict[str, int]]:
    """The prediction row of each rated clip: same id, else an unambiguous path suffix, else
    the prediction whose audio `path` is the rated file."""
    matches = match_ids([it.id for it in items], KeyIndex([r.id for r in preds.rows]))
    rows: list[PredictionRow | None] = [preds.rows[m.index] if m.index is not None else None for m in matches]
    counts = {"id": sum(m.how == "exact" for m in matches if m.found),
              "path suffix": sum(m.how == "suffix" for m in matches if m.found), "path": 0}
    if any(r is None for r in rows):
        used = {m.index for m in matches if m.index is not None}
        by_path: dict[Path, list[int]] = {}
        for i, row in enumerate(preds.rows):
            if row.path and i not in used:
                by_path.setdefault(Path(row.path).resolve(), []).append(i)
        for k, item in enumerate(items):
            hits = by_path.get(Path(item.path).resolve(), []) if rows[k] is None else []
            if len(hits) == 1:
                rows[k] = preds.rows[hits[0]]
                counts["path"] += 1
    return rows, matches, {k: v for k, v in counts.items() if v}


def _join_error(pred_path: Path, truth_path: Path, preds: Predictions, items: list[Item],
                rows: list[PredictionRow | None], matches: list[Match]) -> MosError:
    missing = [k for k, row in enumerate(rows) if row is None]
    unclear = [k for k in missing if matches[k].how in ("ambiguous", "shared")]
    if len(missing) == len(items) and not unclear:
        return MosError(
            f"{pred_path}: no prediction names a clip of {truth_path}: rated clips are named like "
            f"'{items[0].id}', predictions like '{preds.rows[0].id}' (ids must be the path relative to "
            "the ratings file, a path ending it, or a file name found once on each side)"
        )
    if unclear:
        k = unclear[0]
        m = matches[k]
        if m.how == "ambiguous":
            shown = ", ".join(f"'{preds.rows[i].id}'" for i in m.candidates[:3])
            why = f"fits {len(m.candidates)} predictions ({shown})"
        else:
            others = sum(1 for other in matches if other.candidates == m.candidates)
            why = f"and {others - 1} other rated clip(s) all fit the one prediction '{preds.rows[m.candidates[0]].id}'"
        return MosError(
            f"{pred_path}: {len(unclear)} of {len(items)} rated clips have no unambiguous prediction, e.g. "
            f"'{items[k].id}' {why}: name the clips by their path relative to {truth_path}"
        )
    return MosError(f"{pred_path}: no prediction for {len(missing)} of {len(items)} clips, e.g. {items[missing[0]].id}")


def _check_own_truth(pred_path: Path, truth_path: Path, items: list[Item], rows: list[PredictionRow | None]) -> None:
    """A trainer file's `true_*` values must be the ratings' (to the 4 decimals it writes):
    otherwise it was made from other ratings, or the join paired the wrong clips."""
    for item, row in zip(items, rows):
        for name, value in (row.truth if row is not None else {}).items():
            rated = item.targets.get(name)
            if rated is not None and abs(rated - value) > 1e-3 * max(1.0, abs(rated)):
                raise MosError(
                    f"{pred_path}: line {row.line}: true_{name} {value:g} of '{row.id}' is not the rating "  # type: ignore[union-attr]
                    f"{rated:g} of '{item.id}' in {truth_path}: predictions made from other ratings?"
                )


def _system_metrics(manifest: Manifest, truth_t: str, pred: np.ndarray, true: np.ndarray,
                    systems: list[str]) -> Metrics:
    """System level against the source's own system ratings (MusicEval `system_mos`): the mean
    prediction of each system's clips against the file's rating of that system."""
    sys_pred, _, names = system_level(pred, true, systems)
    absent = [s for s in names if truth_t not in manifest.system_targets.get(s, {})]
    if absent:
        raise MosError(f"{manifest.system_source}: no {truth_t} rating for system {absent[0]} "
                       f"({len(absent)} of {len(names)} systems missing)")
    return compute_metrics(sys_pred, np.array([manifest.system_targets[s][truth_t] for s in names]))


def evaluate_summary(pred_path: Path, truth_path: Path, columns: ColumnMap | None = None) -> EvalSummary:
    """`evaluate_files` plus the join's counts (clips rated, predictions for unknown clips)."""
    from mos.data.detect import open_ratings

    pred_path, truth_path = Path(pred_path), Path(truth_path)
    preds = read_predictions(pred_path)
    manifest = open_ratings(truth_path, columns)
    if not manifest.items:
        raise ManifestError(f"{truth_path}: no rated clips")

    truth_targets = manifest.target_names or sorted({t for it in manifest.items for t in it.targets})
    pairing = _pair_targets(pred_path, truth_path, preds.targets, truth_targets)
    items = manifest.items
    rows, matches, joined = _join(preds, items)
    if preds.with_truth and any(r is not None for r in rows):  # a split's predictions: its clips only
        keep = [k for k, (r, m) in enumerate(zip(rows, matches)) if r is not None or m.how in ("ambiguous", "shared")]
        items, rows, matches = [items[k] for k in keep], [rows[k] for k in keep], [matches[k] for k in keep]
    if any(r is None for r in rows):
        raise _join_error(pred_path, truth_path, preds, items, rows, matches)
    _check_own_truth(pred_path, truth_path, items, rows)

    results: dict[str, dict[str, Metrics]] = {}
    calibrations: dict[str, Calibration] = {}
    bands: dict[str, list[BandCalibration]] = {}
    scales = {t.name: (t.low, t.high) for t in manifest.targets}
    system_truth: dict[str, str] = {}
    for truth_t, pred_t in pairing.items():
        picked = [(it, row) for it, row in zip(items, rows) if truth_t in it.targets and row is not None]
        if not picked:
            continue
        missing = [it.id for it, row in picked if pred_t not in row.values]
        if missing:
            raise MosError(
                f"{pred_path}: no prediction for {len(missing)} of {len(picked)} clips, e.g. {missing[0]}"
            )
        pred = np.array([row.values[pred_t] for _, row in picked], dtype=np.float64)
        true = np.array([it.targets[truth_t] for it, _ in picked], dtype=np.float64)
        systems = [it.system for it, _ in picked]
        try:
            results[truth_t] = evaluate_levels(pred, true, systems)
        except ValueError as e:
            raise MosError(f"{truth_path}: {truth_t}: {e}") from None
        spread_t = spread_column(pred_t)
        rated = [(row, it) for it, row in picked if it.ratings.get(truth_t) and row is not None]
        if rated and all(spread_t in row.values for row, _ in rated):
            means, spreads = [row.values[pred_t] for row, _ in rated], [row.values[spread_t] for row, _ in rated]
            ratings = [it.ratings[truth_t] for _, it in rated]
            calibrations[truth_t] = calibration(means, spreads, ratings)
            if truth_t in scales:
                bands[truth_t] = calibration_by_band(means, spreads, ratings, [it.targets[truth_t] for _, it in rated],
                                                     *scales[truth_t])
        if "system" in results[truth_t]:
            if manifest.system_targets:
                results[truth_t]["system"] = _system_metrics(manifest, truth_t, pred, true, systems)  # type: ignore[arg-type]
                system_truth = {"from": "file", "file": str(manifest.system_source)}
            else:
                system_truth = {"from": "mean rating of each system's clips", "file": str(truth_path)}
    if not results:
        raise ManifestError(f"{truth_path}: no clip has a rating for {', '.join(pairing)}")
    used = {id(row) for row in rows}
    ignored = sum(1 for row in preds.rows if id(row) not in used)
    return EvalSummary(results=results, clips=len(items), ignored=ignored, targets=pairing,
                       joined=joined, system_truth=system_truth, rated=len(manifest.items), calibration=calibrations,
                       calibration_bands=bands)


def evaluate_files(pred_path: Path, truth_path: Path, columns: ColumnMap | None = None) -> dict[str, dict[str, Metrics]]:
    """Metrics per target ("score", "overall", ...) and level ("utterance", "system")."""
    return evaluate_summary(pred_path, truth_path, columns).results


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


def format_calibration(calibrations: dict[str, Calibration],
                       bands: dict[str, list[BandCalibration]] | None = None) -> list[str]:
    """One line per target whose predictions carry a listener spread and whose truth has ratings,
    then one per third of its scale (by the clips' true scores) that has rated clips."""
    lines = []
    for target, c in calibrations.items():
        lcc = "n/a" if c.spread_lcc is None else f"{c.spread_lcc:.4f}"
        lines.append(f"[CALIBRATION] {DISPLAY_NAMES.get(target, target.upper())}: listener ratings inside the "
                     f"predicted 50% interval {c.coverage50:.3f} (nominal 0.5), 90% interval {c.coverage90:.3f} "
                     f"(nominal 0.9); Gaussian NLL {c.nll:.4f}; spread LCC {lcc} ({c.ratings} ratings of {c.clips} clips)")
        for b in (bands or {}).get(target, []):
            k = b.calibration
            lines.append(f"[CALIBRATION] {DISPLAY_NAMES.get(target, target.upper())} {b.band} third "
                         f"(true score {b.low:.4g}-{b.high:.4g}): 50% interval {k.coverage50:.3f}, 90% interval "
                         f"{k.coverage90:.3f}; Gaussian NLL {k.nll:.4f} ({k.ratings} ratings of {k.clips} clips)")
    return lines


def _notes(summary: EvalSummary, truth: Path) -> list[str]:
    """The lines printed after the metrics: system-level truth, a join that was not by id, ignored rows."""
    notes: list[str] = []
    if summary.system_truth.get("from") == "file":
        notes.append(f"(system level: each system's true score from {summary.system_truth['file']})")
    elif summary.system_truth:
        notes.append(f"(system level: each system's true score is the mean rating of its clips in {truth})")
    if summary.rated > summary.clips:
        notes.append(f"(evaluated the {summary.clips} of {summary.rated} rated clips that the prediction file, "
                     "a trainer's split, predicts)")
    if set(summary.joined) - {"id"}:
        how = ", ".join(f"{n} by {way}" for way, n in summary.joined.items())
        notes.append(f"(joined {summary.clips} clips: {how})")
    if summary.ignored:
        plural = "" if summary.ignored == 1 else "s"
        notes.append(f"(ignored {summary.ignored} prediction{plural} for clips not in {truth})")
    return notes


def run_eval(pred: Path, truth: Path, json_out: Path | None = None, columns: str | ColumnMap | None = None) -> str:
    """Evaluate `pred` against `truth` (a generic table read through `columns`, a spec as for
    `mos train --columns`), optionally write the results as JSON, return the report."""
    cmap = parse_column_spec(columns) if isinstance(columns, str) else columns
    summary = evaluate_summary(pred, truth, cmap)
    report = "\n".join([format_report(summary.results), *format_calibration(summary.calibration, summary.calibration_bands),
                        *_notes(summary, truth)])
    if json_out is not None:
        doc = {
            "predictions": str(pred),
            "truth": str(truth),
            "clips": summary.clips,
            "rated_clips": summary.rated,
            "ignored_predictions": summary.ignored,
            "targets": summary.targets,
            "joined": summary.joined,
            "system_truth": summary.system_truth or None,
            "results": {
                target: {level: m.as_dict() for level, m in per_level.items()}
                | ({"calibration": summary.calibration[target].as_dict()
                    | {"bands": {b.band: b.as_dict() for b in summary.calibration_bands.get(target, [])}}}
                   if target in summary.calibration else {})
                for target, per_level in summary.results.items()
            },
        }
        try:
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            raise MosError(f"{json_out}: cannot write ({e.strerror or e})") from None
    return report
