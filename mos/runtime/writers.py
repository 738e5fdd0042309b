"""Streaming CSV/JSONL score rows (flushed, resumable after kill -9) and atomic challenge files."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mos.audio import audio_stem
from mos.data.keys import normalize_id
from mos.data.table import csv_records
from mos.errors import MosError, one_line
from mos.files import write_text_atomic

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


class ResumeError(MosError):
    """An output that --resume must not touch: another bundle's or format's, or not parseable."""


def _refuse(path: Path, why: str) -> ResumeError:
    return ResumeError(f"{path}: cannot resume: {why}; the file is left as it is (use another --out, "
                       "or score again without --resume)")


def _parse_csv(text: str, targets: list[str], path: Path) -> list[Row]:
    try:
        records = csv_records(text, path)
    except MosError as exc:
        raise _refuse(path, str(exc)) from None
    if not records:
        return []
    line, header = records[0]
    if header != columns(targets):
        raise _refuse(path, f"its columns ({','.join(header)}) are not this bundle's ({','.join(columns(targets))})")
    rows = []
    for line, values in records[1:]:
        if len(values) != len(header):
            raise _refuse(path, f"line {line} has {len(values)} fields, the header {len(header)}")
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
            raise _refuse(path, f"line {number} is not a JSON row") from None
        if not isinstance(d, dict) or "id" not in d:
            raise _refuse(path, f"line {number} is not a `mos score` JSONL row")
        missing = [t for t in targets if t not in d]
        if missing:
            raise _refuse(path, f"line {number} has no {', '.join(missing)} (another bundle's output?)")
        scores = {t: _number(d.get(t)) for t in targets}
        ok = d.get("status") == "ok" and all(v is not None for v in scores.values())
        rows.append(
            Row(str(d["id"]), str(d.get("path") or ""), d.get("caption"), scores if ok else None,
                _number(d.get("duration")), "ok" if ok else "error", d.get("error"))
        )
    return rows


def read_rows(path: Path, fmt: str, targets: list[str]) -> list[Row]:
    """Rows of a stream file; a torn last line (no trailing newline, as kill -9 leaves) is dropped.
    Anything else that does not parse is a ResumeError: such a file is never rewritten."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError:
        raise _refuse(path, "it is not UTF-8 text") from None
    except OSError as exc:
        raise MosError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return _parse_jsonl(text, targets, path) if fmt == "jsonl" else _parse_csv(text, targets, path)


def meta_path(stream: Path) -> Path:
    """The sidecar that records which bundle and format wrote a stream file: `<out>.meta.json`."""
    return stream.with_name(stream.name + ".meta.json")


@dataclass(frozen=True)
class OutputStamp:
    """What wrote a stream file: its format and targets, the bundle (sha256 of its mos.json, which
    holds the sha256 of every model file) and the audio model file used (name and sha256)."""

    format: str
    targets: tuple[str, ...]
    bundle: str
    bundle_sha256: str
    audio_model: str
    audio_model_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"written_by": "mos score", "format": self.format, "targets": list(self.targets),
                "bundle": self.bundle, "bundle_sha256": self.bundle_sha256,
                "audio_model": self.audio_model, "audio_model_sha256": self.audio_model_sha256}


def _check_stamp(stream: Path, stamp: OutputStamp) -> None:
    """ResumeError unless the sidecar says the same format, bundle and audio model wrote `stream`."""
    sidecar = meta_path(stream)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _refuse(stream, f"no {sidecar.name} beside it records which bundle wrote it") from None
    except (OSError, ValueError) as exc:
        raise _refuse(stream, f"{sidecar.name} is unreadable ({one_line(exc)})") from None
    if not isinstance(meta, dict):
        raise _refuse(stream, f"{sidecar.name} is not a JSON object")
    if meta.get("format") != stamp.format:
        raise _refuse(stream, f"it was written as {meta.get('format')} ({sidecar.name}), this run writes "
                              f"{stamp.format}; resume it with --format {meta.get('format')}")
    if meta.get("bundle_sha256") != stamp.bundle_sha256:
        old = str(meta.get("bundle_sha256"))[:12]
        raise _refuse(stream, f"it holds scores of another bundle ({meta.get('bundle')}, mos.json sha256 "
                              f"{old}...; this bundle's is {stamp.bundle_sha256[:12]}...)")
    if meta.get("audio_model_sha256") != stamp.audio_model_sha256:
        raise _refuse(stream, f"it was scored with {meta.get('audio_model')}, this run uses {stamp.audio_model} "
                              "(--int8 or --fp16 differs?)")


def resume_rows(path: Path, fmt: str, targets: list[str], stamp: OutputStamp) -> list[Row]:
    """For --resume: the ok rows already in `path` (first of each id), after checking that the
    same bundle, audio model and format wrote it. Nothing is written here."""
    if not path.exists():
        return []
    _check_stamp(path, stamp)
    kept: list[Row] = []
    seen: set[str] = set()
    for row in read_rows(path, fmt, targets):
        if row.status == "ok" and row.id not in seen:
            seen.add(row.id)
            kept.append(row)
    return kept


class RowWriter:
    """Appends rows to a CSV or JSONL file, flushing each one so a killed run loses at most the
    line being written. It starts the file with the rows kept from a resumed run (`keep`, or with
    `resume` those `resume_rows` finds: ok rows; error rows and a torn last line are dropped),
    then records `stamp`, when given, in `<out>.meta.json`."""

    def __init__(self, path: Path, fmt: str, targets: list[str], resume: bool = False,
                 stamp: OutputStamp | None = None, keep: list[Row] | None = None) -> None:
        if fmt not in STREAM_FORMATS:
            raise MosError(f"unknown stream format {fmt!r}")
        self.path = Path(path)
        self.fmt = fmt
        self.targets = list(targets)
        if keep is None and resume:
            if stamp is None:
                raise MosError(f"{self.path}: cannot resume without knowing which bundle writes it")
            keep = resume_rows(self.path, fmt, self.targets, stamp)
        self.kept: list[Row] = list(keep or [])
        self.done: set[str] = {r.id for r in self.kept}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Rows first, then the stamp: a kill in between leaves a stamp that refuses, never one that lies.
            write_text_atomic(self.path, self._header() + "".join(self._line(r) for r in self.kept))
            if stamp is not None:
                write_text_atomic(meta_path(self.path), json.dumps(stamp.as_dict(), indent=2) + "\n")
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


def challenge_name(fmt: str, clip_id: str) -> str:
    """How a challenge file names a clip: XACLE's `wav_file_name` is the file name (`a/00012.wav`
    -> `00012.wav`, what the XACLE scorer joins on); AudioMOS drops the audio extension too."""
    base = normalize_id(clip_id).rsplit("/", 1)[-1]
    return base if fmt == "xacle" else audio_stem(base)


def check_challenge_names(fmt: str, ids: list[str]) -> None:
    """MosError before scoring when two inputs would get the same name in the challenge file."""
    first: dict[str, str] = {}
    for clip_id in ids:
        name = challenge_name(fmt, clip_id)
        if name in first:
            raise MosError(
                f"--format {fmt} names each clip by its file name, and inputs {first[name]} and {clip_id} "
                f"both are '{name}': score them in separate runs (or use --format csv)"
            )
        first[name] = clip_id


def write_challenge(path: Path, fmt: str, rows: list[Row], targets: list[str]) -> int:
    """Write the XACLE `wav_file_name,pred_score` CSV or the AudioMOS answer.txt atomically from
    the ok rows, in the order given; returns how many rows it holds."""
    ok = [r for r in rows if r.status == "ok" and r.scores]
    if fmt == "xacle":
        target = xacle_target(targets)
        text = _csv_line(["wav_file_name", "pred_score"]) + "".join(
            _csv_line([challenge_name(fmt, r.id), _fmt(r.scores[target], 6)]) for r in ok  # type: ignore[index]
        )
    elif fmt == "audiomos":
        text = "".join(
            f"{challenge_name(fmt, r.id)},{_fmt(r.scores['overall'], 6)},{_fmt(r.scores['textual'], 6)}\n"  # type: ignore[index]
            for r in ok
        )
    else:
        raise MosError(f"unknown challenge format {fmt!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as exc:
        raise MosError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return len(ok)
