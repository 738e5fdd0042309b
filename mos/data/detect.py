"""The one place that decides what a path given by the user means, for train, score and eval alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from mos.data.folder import FolderScan, Skipped, describe_skipped, folder_manifest, load_list_file, scan_folder, scan_folder_checked
from mos.data.manifest import Item, Manifest
from mos.data.musiceval import (
    canonical_split as musiceval_split,
    find_musiceval_roots,
    find_system_mos,
    has_split as musiceval_has_split,
    list_tree,
    load_musiceval,
    load_musiceval_list,
    load_system_mos,
    prompt_captions,
)
from mos.data.table import ColumnMap, load_table, read_csv_rows
from mos.data.xacle import (
    RATING_COLUMNS,
    SCORE_COLUMN,
    XACLE_SPLITS,
    canonical_split as xacle_split,
    find_xacle_roots,
    has_split as xacle_has_split,
    load_xacle,
    load_xacle_csv,
    load_xacle_listener_csv,
    split_of_csv,
)
from mos.errors import ManifestError

NOT_A_DATASET = (
    "not a dataset: expected an XACLE tree (meta_data/*_average.csv), a MusicEval tree "
    "(sets/*_list.txt), a CSV/JSONL file or a folder of audio"
)
NOT_RATINGS = (
    "expected a ratings file: an XACLE *_average.csv, a MusicEval *_mos_list.txt, or a CSV/JSONL "
    "table with --columns"
)
TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
LIST_SUFFIXES = (".txt", ".lst")
MUSICEVAL_SPLITS = ("train", "dev", "test")


class Kind(str, Enum):
    """What a path is."""

    XACLE_TREE = "XACLE tree"
    MUSICEVAL_TREE = "MusicEval tree"
    FOLDER = "folder"
    XACLE_CSV = "XACLE CSV"
    MUSICEVAL_LIST = "MusicEval list"
    TABLE = "table"
    LIST = "list file"
    AUDIO = "audio file"


@dataclass
class ScoreInputs:
    """What `mos score` scores: the manifest, a one-line description, and files left out and why."""

    manifest: Manifest
    description: str
    skipped: list[Skipped] = field(default_factory=list)


def _csv_header(path: Path) -> list[str]:
    return read_csv_rows(path, allow_no_rows=True).header


def is_musiceval_list(path: Path) -> bool:
    """A MusicEval list: `*_mos_list.txt` anywhere, or `sets/*_list.txt` (the tree's layout)."""
    name = path.name.lower()
    return name.endswith("_mos_list.txt") or (name.endswith("_list.txt") and path.parent.name == "sets")


def identify(path: Path, columns: ColumnMap | None = None) -> Kind:
    """What `path` is. Folders: an XACLE or MusicEval tree (at it or up to two levels below),
    else a folder of audio. Files: a .csv/.jsonl is a table (an XACLE CSV when it has a
    `wav_file_name` column and no column mapping is given), a MusicEval list, a list file of
    paths (.txt/.lst), else an audio file (which may or may not decode)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such file or directory")
    if path.is_dir():
        kind = Kind.XACLE_TREE if find_xacle_roots(path) else (
            Kind.MUSICEVAL_TREE if find_musiceval_roots(path) else Kind.FOLDER)
    else:
        suffix = path.suffix.lower()
        if suffix in TABLE_SUFFIXES:
            xacle = columns is None and suffix == ".csv" and "wav_file_name" in _csv_header(path)
            kind = Kind.XACLE_CSV if xacle else Kind.TABLE
        elif is_musiceval_list(path):
            kind = Kind.MUSICEVAL_LIST
        elif suffix in LIST_SUFFIXES:
            kind = Kind.LIST
        else:
            kind = Kind.AUDIO
    if columns is not None and kind is not Kind.TABLE:
        raise ManifestError(f"{path}: a column mapping (--columns) needs a .csv or .jsonl table, this is a {kind.value}")
    return kind


def _needs_mapping(path: Path) -> ManifestError:
    header = _csv_header(path) if path.suffix.lower() == ".csv" else []
    shown = f" (header: {', '.join(header)})" if header else ""
    return ManifestError(
        f"{path}: a generic table needs a column mapping (--columns), e.g. "
        f"path=path,target:score=mos,caption=text{shown}"
    )


def _table(path: Path, columns: ColumnMap | None, check_audio: bool) -> Manifest:
    if columns is None:
        raise _needs_mapping(path)
    return load_table(path, columns, check_audio=check_audio)


def _xacle_csv_ratings_sibling(csv_file: Path) -> Path | None:
    """`train.csv` next to `train_average.csv`, when it exists and holds a score column."""
    split = split_of_csv(csv_file)
    if split is None or not csv_file.stem.endswith("_average"):
        return None
    sibling = csv_file.with_name(f"{split}.csv")
    if not sibling.is_file():
        return None
    header = _csv_header(sibling)
    return sibling if any(c in header for c in RATING_COLUMNS) else None


def _tree_splits(path: Path, kind: Kind) -> tuple[list[str], tuple[str, ...]]:
    """(splits present, every split name) of an XACLE or MusicEval tree."""
    if kind is Kind.XACLE_TREE:
        trees, names, present = find_xacle_roots(path), XACLE_SPLITS, xacle_has_split
    else:
        trees, names, present = find_musiceval_roots(path), MUSICEVAL_SPLITS, musiceval_has_split
    return [s for s in names if present(trees, s)], names


def _load_split(path: Path, kind: Kind, split: str, check_audio: bool, captions: bool = True) -> Manifest:
    if kind is Kind.XACLE_TREE:
        return load_xacle(path, split, check_audio=check_audio)
    return load_musiceval(path, split, check_audio=check_audio, captions=captions)


def _no_dataset_folder(scan: FolderScan) -> ManifestError:
    held = f" ({describe_skipped(scan.skipped)})" if scan.skipped else ""
    return ManifestError(f"{scan.root}: {NOT_A_DATASET}{held}")


def open_dataset(path: Path, columns: ColumnMap | None = None) -> dict[str, Manifest]:
    """Split name -> Manifest of rated clips to train on, for whatever `path` is.

    XACLE tree -> train/validation; MusicEval tree -> train/dev (a tree with neither gives its
    test split); .csv/.jsonl file -> {"all": ...} (generic tables need `columns`; an XACLE-style
    CSV does not); MusicEval list file -> {"all": ...}; folder of audio -> {"all": ...}.
    """
    path = Path(path)
    kind = identify(path, columns)
    if kind in (Kind.XACLE_TREE, Kind.MUSICEVAL_TREE):
        present, _ = _tree_splits(path, kind)
        wanted = [s for s in present if s != "test"] or ["test"]
        return {s: _load_split(path, kind, s, check_audio=True) for s in wanted}
    if kind is Kind.FOLDER:
        scan = scan_folder(path)
        if not scan.files:
            raise _no_dataset_folder(scan)
        return {"all": folder_manifest(scan)}
    if kind is Kind.XACLE_CSV:
        header = _csv_header(path)
        return {"all": load_xacle_csv(path, ratings_file=_xacle_csv_ratings_sibling(path), check_audio=True,
                                      require_scores=SCORE_COLUMN in header, require_text=True)}
    if kind is Kind.TABLE:
        return {"all": _table(path, columns, check_audio=True)}
    if kind is Kind.MUSICEVAL_LIST:
        prompts, demo = prompt_captions(list_tree(path))
        return {"all": load_musiceval_list(path, None, prompts, demo, check_audio=True)}
    raise ManifestError(f"{path}: {NOT_A_DATASET}")


def open_ratings(path: Path, columns: ColumnMap | None = None) -> Manifest:
    """Ground-truth ratings for `mos eval` from one file; the audio files need not exist.

    Accepts an XACLE `*_average.csv`, a MusicEval `*_mos_list.txt` (ids get `.wav`; the tree's
    `system_mos/system_mos_phase<N>.csv`, when present, gives the system-level truth), or a
    generic CSV/JSONL with a column mapping. The file must hold at least one score.
    """
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"{path}: is a directory; {NOT_RATINGS}")
    if not path.is_file():
        raise ManifestError(f"{path}: file not found")
    kind = identify(path, columns)
    if kind is Kind.XACLE_CSV:
        header = _csv_header(path)
        if SCORE_COLUMN not in header and any(c in header for c in RATING_COLUMNS):
            manifest = load_xacle_listener_csv(path)  # validation.csv: one row per listener
        else:
            manifest = load_xacle_csv(path, ratings_file=_xacle_csv_ratings_sibling(path), check_audio=False,
                                      require_scores=SCORE_COLUMN in header, require_text=False)
    elif kind is Kind.TABLE:
        manifest = _table(path, columns, check_audio=False)
    elif kind is Kind.MUSICEVAL_LIST:
        manifest = load_musiceval_list(path, None, check_audio=False)
        system_file = find_system_mos(list_tree(path))
        if system_file is not None:
            manifest.system_targets = load_system_mos(system_file)
            manifest.system_source = str(system_file)
    else:
        raise ManifestError(f"{path}: {NOT_RATINGS}")
    if not manifest.targets:
        raise ManifestError(f"{path}: holds no scores, so it cannot serve as ground truth")
    return manifest


def open_inputs(
    path: Path, columns: ColumnMap | None = None, split: str | None = None, captions: bool = True
) -> ScoreInputs:
    """The clips to score at `path` (their audio is checked when scored, not here).

    A folder: every file of a format libsndfile reads (the rest listed in `skipped`). An XACLE
    or MusicEval tree: its test split when present, else every split it has; `split` chooses.
    A list file: its paths. An XACLE CSV, a MusicEval list or a table (with `columns`): its
    clips. Any other file: that one file. `captions=False` leaves the prompt files unread.
    """
    path = Path(path)
    kind = identify(path, columns)
    if split is not None and kind not in (Kind.XACLE_TREE, Kind.MUSICEVAL_TREE):
        raise ManifestError(f"{path}: --split chooses a split of an XACLE or MusicEval tree; this is a {kind.value}")
    if kind in (Kind.XACLE_TREE, Kind.MUSICEVAL_TREE):
        return _tree_inputs(path, kind, split, captions)
    if kind is Kind.FOLDER:
        scan = scan_folder_checked(path)
        return ScoreInputs(folder_manifest(scan), f"folder {path}", scan.skipped)
    if kind is Kind.XACLE_CSV:
        manifest = load_xacle_csv(path, check_audio=False, require_scores=False, require_text=False)
    elif kind is Kind.TABLE:
        manifest = _table(path, columns, check_audio=False)
    elif kind is Kind.MUSICEVAL_LIST:
        prompts, demo = prompt_captions(list_tree(path)) if captions else (None, None)
        manifest = load_musiceval_list(path, None, prompts, demo, check_audio=False)
    elif kind is Kind.LIST:
        manifest = load_list_file(path)
    else:
        manifest = Manifest(items=[Item(id=path.name, path=path)], targets=[], source=str(path))
    return ScoreInputs(manifest, f"{kind.value} {path}")


def _tree_inputs(path: Path, kind: Kind, split: str | None, captions: bool) -> ScoreInputs:
    present, names = _tree_splits(path, kind)
    if split is not None:
        split = (xacle_split if kind is Kind.XACLE_TREE else musiceval_split)(split)
        if split not in present:
            raise ManifestError(
                f"{path}: no {split} split in this {kind.value} (it has: {', '.join(present) or 'none'}; "
                f"split names: {', '.join(names)})"
            )
        chosen, note = [split], ""
    elif "test" in present:
        chosen, note = ["test"], " (--split chooses another)"
    else:
        chosen, note = present, " (no test split here; --split chooses one)"
    items: list[Item] = []
    sources: list[str] = []
    for name in chosen:
        manifest = _load_split(path, kind, name, check_audio=False, captions=captions)
        items += manifest.items
        sources.append(manifest.source)
    manifest = Manifest(items=items, targets=[], source=", ".join(sources))
    return ScoreInputs(manifest, f"{kind.value} {'+'.join(chosen)} split at {path}{note}")
