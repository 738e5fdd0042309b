"""Streaming CSV/JSONL score rows (flushed, resumable after kill -9) and atomic challenge files."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mos.audio import audio_stem
from mos.errors import MosError

STREAM_FORMATS = ("csv", "jsonl")
CHALLENGE_FORMATS = ("xacle", "audiomos")
FORMATS = STREAM_FORMATS + CHALLENGE_FORMATS
AUDIOMOS_TARGETS = ("overall", "textual")


@dataclass
class Row:
    """One output row: a file's scores (target -> value) or its one-line error."""

    id: str
    path: str
    caption: str | None
    scores: dict[str, float] | None
    duration: float | None
    status: str  # "ok" or "error"
    error: str | None = None


def columns(targets: list[str]) -> list[str]:
    return ["id", "path", "caption", *targets, "duration", "status", "error"]


def _clean(text: str | None) -> str:
    """One line: newlines and tabs in captions/errors become spaces (a torn line stays detectable)."""
    return " ".join(text.split()) if text else ""


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _csv_values(row: Row, targets: list[str]) -> list[str]:
    scores = row.scores or {}
    return [
        row.id,
        row.path,
        _clean(row.caption),
        *[_fmt(scores.get(t), 6) for t in targets],
        _fmt(row.duration, 3),
        row.status,
        _clean(row.error),
    ]


def _json_line(row: Row, targets: list[str]) -> str:
    scores = row.scores or {}
    obj: dict[str, Any] = {"id": row.id, "path": row.path, "caption": _clean(row.caption) or None}
    for t in targets:
        obj[t] = round(scores[t], 6) if t in scores else None
    obj["duration"] = None if row.duration is None else round(row.duration, 3)
    obj["status"] = row.status
    obj["error"] = _clean(row.error) or None
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _number(text: Any) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _parse_csv(text: str, targets: list[str], path: Path) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return []
    if header != columns(targets):
        raise MosError(
            f"{path}: cannot resume: its columns ({','.join(header)}) are not this bundle's "
            f"({','.join(columns(targets))}); use another --out"
        )
    rows = []
    for values in reader:
        if len(values) != len(header):
            continue  # a damaged row: dropped, its file is scored again
        d = dict(zip(header, values))
        scores = {t: _number(d[t]) for t in targets}
        ok = d["status"] == "ok" and all(v is not None for v in scores.values())
        rows.append(
            Row(d["id"], d["path"], d["caption"] or None, scores if ok else None, _number(d["duration"]),
                "ok" if ok else "error", d["error"] or None)
        )
    return rows


def _parse_jsonl(text: str, targets: list[str], path: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue  # a damaged row: dropped, its file is scored again
        if not isinstance(d, dict) or "id" not in d:
            raise MosError(f"{path}:{number}: cannot resume: not a `mos score` JSONL row; use another --out")
        missing = [t for t in targets if t not in d]
        if missing:
            raise MosError(f"{path}:{number}: cannot resume: no {', '.join(missing)} (another bundle's output?); use another --out")
        scores = {t: _number(d.get(t)) for t in targets}
        ok = d.get("status") == "ok" and all(v is not None for v in scores.values())
        rows.append(
            Row(str(d["id"]), str(d.get("path") or ""), d.get("caption"), scores if ok else None,
                _number(d.get("duration")), "ok" if ok else "error", d.get("error"))
        )
    return rows


def read_rows(path: Path, fmt: str, targets: list[str]) -> list[Row]:
    """Rows of a stream file; a torn last line (no trailing newline, as kill -9 leaves) is dropped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise MosError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return _parse_jsonl(text, targets, path) if fmt == "jsonl" else _parse_csv(text, targets, path)


class RowWriter:
    """Appends rows to a CSV or JSONL file, flushing each one so a killed run loses at most the
    line being written. With `resume`, rows already there with status ok are kept (`done`), error
    rows and a torn last line are dropped (the file is rewritten without them), and new rows follow."""

    def __init__(self, path: Path, fmt: str, targets: list[str], resume: bool = False) -> None:
        if fmt not in STREAM_FORMATS:
            raise MosError(f"unknown stream format {fmt!r}")
        self.path = Path(path)
        self.fmt = fmt
        self.targets = list(targets)
        self.kept: list[Row] = []
        if resume and self.path.exists():
            seen: set[str] = set()
            for row in read_rows(self.path, fmt, self.targets):
                if row.status == "ok" and row.id not in seen:
                    seen.add(row.id)
                    self.kept.append(row)
        self.done: set[str] = {r.id for r in self.kept}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.path, self._header() + "".join(self._line(r) for r in self.kept))
            self._file: IO[str] = self.path.open("a", encoding="utf-8", newline="")
        except OSError as exc:
            raise MosError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def _header(self) -> str:
        return _csv_line(columns(self.targets)) if self.fmt == "csv" else ""

    def _line(self, row: Row) -> str:
        return _csv_line(_csv_values(row, self.targets)) if self.fmt == "csv" else _json_line(row, self.targets)

    def write(self, row: Row) -> None:
        self._file.write(self._line(row))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def xacle_target(targets: list[str]) -> str:
    """The target an XACLE file reports: `score`, or the bundle's only target."""
    if "score" in targets:
        return "score"
    if len(targets) == 1:
        return targets[0]
    raise MosError(f"--format xacle needs a bundle with one target or a target named score (this one has {', '.join(targets)})")


def check_challenge_targets(fmt: str, targets: list[str]) -> None:
    """MosError before scoring when the bundle cannot fill the challenge file."""
    if fmt == "xacle":
        xacle_target(targets)
    elif fmt == "audiomos":
        missing = [t for t in AUDIOMOS_TARGETS if t not in targets]
        if missing:
            raise MosError(f"--format audiomos needs targets overall and textual (this bundle has {', '.join(targets)})")


def write_challenge(path: Path, fmt: str, rows: list[Row], targets: list[str]) -> int:
    """Write the XACLE `wav_file_name,pred_score` CSV or the AudioMOS answer.txt atomically from
    the ok rows, in the order given; returns how many rows it holds."""
    ok = [r for r in rows if r.status == "ok" and r.scores]
    if fmt == "xacle":
        target = xacle_target(targets)
        text = _csv_line(["wav_file_name", "pred_score"]) + "".join(
            _csv_line([r.id, _fmt(r.scores[target], 6)]) for r in ok  # type: ignore[index]
        )
    elif fmt == "audiomos":
        text = "".join(
            f"{audio_stem(r.id)},{_fmt(r.scores['overall'], 6)},{_fmt(r.scores['textual'], 6)}\n"  # type: ignore[index]
            for r in ok
        )
    else:
        raise MosError(f"unknown challenge format {fmt!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, text)
    except OSError as exc:
        raise MosError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return len(ok)
