"""Generic CSV/JSONL rating tables read through a column mapping, plus the shared CSV helpers."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mos.data.manifest import Item, Manifest, Target
from mos.errors import ManifestError

# ---------------------------------------------------------------------------------------------
# Shared helpers (also used by the XACLE, MusicEval and caption readers)
# ---------------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (BOM allowed); ManifestError for a missing or undecodable file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}:{line}: bytes are not valid UTF-8 (byte 0x{data[exc.start]:02x})"
        ) from None


@dataclass(frozen=True)
class CsvRows:
    """A parsed CSV: its header and each data row as (line number, column -> value)."""

    path: Path
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]


def csv_records(text: str, path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row of CSV text, fields as written.

    Line numbers are 1-based and point at the first physical line of each row (quoted captions
    may span lines). Malformed CSV is a ManifestError naming `path:line`.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return records
        except csv.Error as exc:
            raise ManifestError(f"{path}:{start}: malformed CSV: {exc}") from None
        if fields and any(f.strip() for f in fields):
            records.append((start, fields))


def read_csv_rows(path: Path, required: Sequence[str] = (), allow_no_rows: bool = False) -> CsvRows:
    """Parse a CSV with a header row; blank lines are skipped, ragged rows are errors.

    Line numbers are 1-based and point at the first physical line of each row (quoted captions
    may span lines). `required` columns must be in the header.
    """
    path = Path(path)
    records = csv_records(read_text(path), path)
    if not records:
        raise ManifestError(f"{path}: empty CSV file (no header)")
    start, fields = records[0]
    header = [f.strip() for f in fields]
    seen: set[str] = set()
    for name in header:
        if name in seen and name:
            raise ManifestError(f"{path}:{start}: column '{name}' appears twice in the header")
        seen.add(name)
    for name in required:
        if name not in header:
            raise ManifestError(f"{path}:{start}: missing column '{name}' (header: {', '.join(header)})")
    rows: list[tuple[int, dict[str, str]]] = []
    for start, fields in records[1:]:
        if len(fields) != len(header):
            raise ManifestError(
                f"{path}:{start}: expected {len(header)} fields like the header, found {len(fields)}"
            )
        rows.append((start, dict(zip(header, fields))))
    if not rows and not allow_no_rows:
        raise ManifestError(f"{path}: CSV file has a header but no rows")
    return CsvRows(path=path, header=header, rows=rows)


def parse_number(value: Any, where: str, column: str) -> float:
    """A finite float from a cell, else ManifestError `<where>: <column> '<value>' is not a number`."""
    if isinstance(value, bool):
        raise ManifestError(f"{where}: {column} {value!r} is not a number")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            raise ManifestError(f"{where}: {column} '{text}' is not a number") from None
    if not math.isfinite(number):
        raise ManifestError(f"{where}: {column} '{value}' is not a finite number")
    return number


def check_range(value: float, low: float, high: float, where: str, column: str) -> None:
    """ManifestError when `value` lies outside [low, high]."""
    if value < low or value > high:
        raise ManifestError(f"{where}: {column} {value:g} is outside {low:g}..{high:g}")


# ---------------------------------------------------------------------------------------------
# Column mapping
# ---------------------------------------------------------------------------------------------


@dataclass
class ColumnMap:
    """Which table columns hold the audio path, targets, caption, system, id, ratings and listeners.

    `targets`, `ratings` and `listeners` map target name -> column (`listeners`: a JSON list of
    listener ids parallel to that target's ratings); `ranges` maps target name -> (low, high)
    (inferred from the data when absent).
    """

    path: str = "path"
    targets: dict[str, str] = field(default_factory=dict)
    caption: str | None = None
    system: str | None = None
    id: str | None = None
    ratings: dict[str, str] = field(default_factory=dict)
    listeners: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def columns(self) -> list[str]:
        """Every column the mapping reads, in a stable order."""
        out = [self.path]
        out += [c for c in (self.id, self.caption, self.system) if c]
        out += list(self.targets.values()) + list(self.ratings.values()) + list(self.listeners.values())
        return list(dict.fromkeys(out))


_SPEC_HELP = "expected comma-separated key=column with keys path, id, caption, system, target:NAME, ratings:NAME, listeners:NAME, range:NAME=LOW:HIGH"


def parse_column_spec(spec: str) -> ColumnMap:
    """Parse a CLI mapping like `path=path,caption=text,target:mushra=mean_score,range:mushra=0:100`."""
    cmap = ColumnMap()
    seen: set[str] = set()
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ManifestError(f"column mapping '{spec}': '{part}' is not key=column ({_SPEC_HELP})")
        if key in seen:
            raise ManifestError(f"column mapping '{spec}': '{key}' given twice")
        seen.add(key)
        kind, _, name = key.partition(":")
        if kind in ("path", "caption", "system", "id") and not name:
            setattr(cmap, kind, value)
        elif kind == "target":
            cmap.targets[name or value] = value
        elif kind == "ratings" and name:
            cmap.ratings[name] = value
        elif kind == "listeners" and name:
            cmap.listeners[name] = value
        elif kind == "range" and name:
            low_text, colon, high_text = value.partition(":")
            try:
                low, high = float(low_text), float(high_text)
            except ValueError:
                low = high = math.nan
            if not colon or not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                raise ManifestError(
                    f"column mapping '{spec}': range '{value}' for {name} is not LOW:HIGH with LOW < HIGH"
                )
            cmap.ranges[name] = (low, high)
        else:
            raise ManifestError(f"column mapping '{spec}': unknown key '{key}' ({_SPEC_HELP})")
    for name in cmap.ranges:
        if name not in cmap.targets:
            raise ManifestError(f"column mapping '{spec}': range given for '{name}', which is not a target")
    for name in cmap.listeners:
        if name not in cmap.ratings:
            raise ManifestError(f"column mapping '{spec}': listeners given for '{name}', which has no ratings:{name} column")
    return cmap


# ---------------------------------------------------------------------------------------------
# Table reading
# ---------------------------------------------------------------------------------------------


def _read_records(file: Path, wanted: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a .csv (header row) or .jsonl (one object a line) as (line, column -> value)."""
    suffix = file.suffix.lower()
    if suffix == ".csv":
        table = read_csv_rows(file)
        for name in wanted:
            if name not in table.header:
                raise ManifestError(f"{file}:1: missing column '{name}' (header: {', '.join(table.header)})")
        return list(table.rows)
    if suffix in (".jsonl", ".ndjson"):
        records: list[tuple[int, dict[str, Any]]] = []
        for number, line in enumerate(read_text(file).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{file}:{number}: invalid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise ManifestError(f"{file}:{number}: expected a JSON object, found {type(obj).__name__}")
            records.append((number, obj))
        if not records:
            raise ManifestError(f"{file}: empty JSONL file")
        for name in wanted:
            if not any(name in obj for _, obj in records):
                raise ManifestError(f"{file}: column '{name}' appears in no line")
        return records
    raise ManifestError(f"{file}: expected a .csv or .jsonl table, found '{file.suffix or 'no extension'}'")


def _as_text(value: Any) -> str | None:
    """A stripped string, or None for a missing/empty cell."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _json_list(value: Any, where: str, column: str, what: str) -> list[Any] | None:
    """A JSON list (a string in CSV, a list in JSONL), or None when empty; `what` names its items."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ManifestError(f"{where}: {column} '{value}' is not a JSON list of {what}") from None
    if not isinstance(value, list):
        raise ManifestError(f"{where}: {column} {value!r} is not a JSON list of {what}")
    return value


def _parse_ratings(value: Any, where: str, column: str) -> tuple[float, ...] | None:
    """A JSON list of numbers (a string in CSV, a list in JSONL), or None when empty."""
    values = _json_list(value, where, column, "numbers")
    return None if values is None else tuple(parse_number(v, where, column) for v in values)


def _parse_listeners(value: Any, where: str, column: str) -> tuple[str, ...] | None:
    """A JSON list of listener ids (strings or numbers), or None when empty."""
    value = _json_list(value, where, column, "listener ids")
    if value is None:
        return None
    ids = tuple(_as_text(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None for v in value)
    if any(i is None for i in ids):
        raise ManifestError(f"{where}: {column} holds an empty or non-scalar listener id")
    return ids  # type: ignore[return-value]


def _item_id(record: dict[str, Any], columns: ColumnMap, where: str) -> tuple[str, str]:
    """(id, path as written) of a record."""
    path_text = _as_text(record.get(columns.path))
    if path_text is None:
        raise ManifestError(f"{where}: empty {columns.path}")
    item_id = path_text
    if columns.id:
        given = _as_text(record.get(columns.id))
        if given is None:
            raise ManifestError(f"{where}: empty {columns.id}")
        item_id = given
    return item_id, path_text


def load_table(file: Path, columns: ColumnMap, check_audio: bool = True) -> Manifest:
    """Read a generic CSV/JSONL rating table; audio paths are relative to the table's directory.

    Empty target cells leave that target out for the item; ratings and listeners columns hold
    JSON lists (a listeners list pairs up with the same target's ratings list).
    """
    file = Path(file)
    for name in columns.ranges:
        if name not in columns.targets:
            raise ManifestError(f"{file}: range given for '{name}', which is not a target")
    for name in columns.listeners:
        if name not in columns.ratings:
            raise ManifestError(f"{file}: listeners given for '{name}', which has no ratings column")
    records = _read_records(file, columns.columns())
    base = file.parent
    items: list[Item] = []
    first_line: dict[str, int] = {}
    observed: dict[str, list[float]] = {name: [] for name in columns.targets}
    for line, record in records:
        where = f"{file}:{line}"
        item_id, path_text = _item_id(record, columns, where)
        if item_id in first_line:
            raise ManifestError(f"{where}: duplicate id '{item_id}' (first on line {first_line[item_id]})")
        first_line[item_id] = line
        audio = Path(path_text)
        if not audio.is_absolute():
            audio = base / audio
        if check_audio and not audio.is_file():
            raise ManifestError(f"{where}: audio file '{path_text}' not found")
        targets: dict[str, float] = {}
        for name, column in columns.targets.items():
            raw = record.get(column)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            value = parse_number(raw, where, column)
            if name in columns.ranges:
                check_range(value, *columns.ranges[name], where, column)
            targets[name] = value
            observed[name].append(value)
        ratings: dict[str, tuple[float, ...]] = {}
        for name, column in columns.ratings.items():
            values = _parse_ratings(record.get(column), where, column)
            if values is None:
                continue
            if name in columns.ranges:
                for v in values:
                    check_range(v, *columns.ranges[name], where, column)
            ratings[name] = values
        listeners: dict[str, tuple[str, ...]] = {}
        for name, column in columns.listeners.items():
            ids = _parse_listeners(record.get(column), where, column)
            if ids is None:
                continue
            count = len(ratings.get(name, ()))
            if len(ids) != count:
                raise ManifestError(f"{where}: {column} has {len(ids)} listener ids but {columns.ratings[name]} "
                                    f"has {count} ratings (they must pair up)")
            listeners[name] = ids
        items.append(
            Item(
                id=item_id,
                path=audio,
                caption=_as_text(record.get(columns.caption)) if columns.caption else None,
                targets=targets,
                system=_as_text(record.get(columns.system)) if columns.system else None,
                ratings=ratings,
                listeners=listeners,
            )
        )
    target_list: list[Target] = []
    for name, column in columns.targets.items():
        if name in columns.ranges:
            low, high = columns.ranges[name]
        elif observed[name]:
            low, high = min(observed[name]), max(observed[name])
        else:
            raise ManifestError(f"{file}: target column '{column}' holds no values")
        target_list.append(Target(name, float(low), float(high)))
    return Manifest(items=items, targets=target_list, source=str(file))


def load_table_groups(file: Path, column: str, columns: ColumnMap | None = None) -> dict[str, str]:
    """Map item id -> value of `column` (e.g. the utterance a stimulus came from) for grouped splits.

    Ids are computed as `load_table` does with `columns` (default: the `path` column).
    Rows with an empty group cell are left out.
    """
    file = Path(file)
    columns = columns or ColumnMap()
    wanted = [columns.path] + ([columns.id] if columns.id else []) + [column]
    groups: dict[str, str] = {}
    for line, record in _read_records(file, wanted):
        item_id, _ = _item_id(record, columns, f"{file}:{line}")
        group = _as_text(record.get(column))
        if group is not None:
            groups[item_id] = group
    return groups
