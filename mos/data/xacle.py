"""XACLE challenge reader: meta_data/{split}_average.csv + wav/{split}/ -> Manifest (score 0-10)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mos.data.folder import load_folder
from mos.data.manifest import Item, Manifest, Target
from mos.data.table import check_range, parse_number, read_csv_rows
from mos.errors import ManifestError
from mos.data.tree_search import find_trees

XACLE_SPLITS = ("train", "validation", "test")
SCORE_LOW, SCORE_HIGH = 0.0, 10.0
SCORE_COLUMN = "average_score"
RATING_COLUMNS = ("score", "average_score", "rating")
# The per-listener file's listener id column: the first of these in its header.
LISTENER_COLUMNS = ("listener", "listener_id", "rater", "rater_id", "worker_id")
# The per-listener file's clip column: the dataset's `wav_file_name`, or `wav` as the XACLE
# baseline's own per-listener lists name it; the first of these in its header.
CLIP_COLUMNS = ("wav_file_name", "wav")
_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}


def is_xacle_tree(path: Path) -> bool:
    """True when `path` holds `meta_data/` with at least one CSV."""
    meta = Path(path) / "meta_data"
    return meta.is_dir() and any(meta.glob("*.csv"))


def find_xacle_roots(root: Path) -> list[Path]:
    """XACLE trees at `root` or up to two levels below it (root first, then sorted)."""
    return find_trees(root, is_xacle_tree, ("wav", "meta_data"))


def split_files(tree: Path, split: str) -> tuple[Path | None, Path | None]:
    """(average csv, per-listener csv) that exist for `split` in `tree`."""
    meta = tree / "meta_data"
    avg = meta / f"{split}_average.csv"
    per = meta / f"{split}.csv"
    return (avg if avg.is_file() else None), (per if per.is_file() else None)


def canonical_split(split: str) -> str:
    """`val`/`valid`/`dev` -> `validation`; other names unchanged."""
    return _ALIASES.get(split, split)


def has_split(trees: list[Path], split: str) -> bool:
    """True when one of the trees holds `split`: its `*_average.csv`, or for test a caption CSV
    or just the `wav/test/` folder."""
    split = canonical_split(split)
    for tree in trees:
        avg, per = split_files(tree, split)
        if avg is not None or (split == "test" and (per is not None or (tree / "wav" / "test").is_dir())):
            return True
    return False


def load_xacle(root: Path, split: str, check_audio: bool = True) -> Manifest:
    """Load one XACLE split from the XACLE_dataset dir or a parent up to two levels above it.

    train/validation need `meta_data/{split}_average.csv`; `meta_data/{split}.csv`, when present,
    adds per-listener ratings (its clips in `wav_file_name` or `wav`; listener ids from a
    LISTENER_COLUMNS column). test may be a caption CSV without scores, or just `wav/test/`.
    """
    root = Path(root)
    split = canonical_split(split)
    if split not in XACLE_SPLITS:
        raise ManifestError(f"{root}: unknown XACLE split '{split}' (expected train, validation or test)")
    trees = find_xacle_roots(root)
    if not trees:
        raise ManifestError(
            f"{root}: no XACLE dataset here (expected meta_data/{split}_average.csv, "
            f"or an XACLE_dataset folder up to two levels below)"
        )
    for tree in trees:
        avg, per = split_files(tree, split)
        wav_dir = tree / "wav" / split
        if split != "test":
            if avg is not None:
                return load_xacle_csv(avg, [wav_dir], ratings_file=per, check_audio=check_audio)
            continue
        csv_file = avg or per
        if csv_file is not None:
            return load_xacle_csv(csv_file, [wav_dir], check_audio=check_audio, require_scores=False)
        if wav_dir.is_dir():
            return load_folder(wav_dir)
    expected = trees[0] / "meta_data" / f"{split}_average.csv"
    raise ManifestError(f"{expected}: file not found")


def _read_listener_ratings(file: Path) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Per-listener ratings: clip name (`wav_file_name`, or `wav`) -> list of scores, from
    `score`/`average_score`/`rating`, and clip name -> the listener ids of those scores when a
    LISTENER_COLUMNS column exists (else an empty dict)."""
    table = read_csv_rows(file)
    clip = next((c for c in CLIP_COLUMNS if c in table.header), None)
    if clip is None:
        raise ManifestError(f"{file}:1: missing column 'wav_file_name' (or 'wav') (header: {', '.join(table.header)})")
    column = next((c for c in RATING_COLUMNS if c in table.header), None)
    if column is None:
        raise ManifestError(
            f"{file}:1: missing column 'score' (or 'average_score'/'rating') (header: {', '.join(table.header)})"
        )
    who = next((c for c in LISTENER_COLUMNS if c in table.header), None)
    ratings: dict[str, list[float]] = {}
    listeners: dict[str, list[str]] = {}
    for line, row in table.rows:
        where = f"{file}:{line}"
        name = row[clip].strip()
        if not name:
            raise ManifestError(f"{where}: empty {clip}")
        value = parse_number(row[column], where, column)
        check_range(value, SCORE_LOW, SCORE_HIGH, where, column)
        ratings.setdefault(name, []).append(value)
        if who is not None:
            listener = row[who].strip()
            if not listener:
                raise ManifestError(f"{where}: empty {who}")
            listeners.setdefault(name, []).append(listener)
    return ratings, listeners


def load_xacle_listener_csv(file: Path) -> Manifest:
    """Ground truth from a per-listener file alone (`validation.csv`: one row per listener and
    clip): each clip's target is the mean of its listeners' ratings, which it also carries.
    The audio need not exist (ids as written; paths beside the file)."""
    file = Path(file)
    ratings, listeners = _read_listener_ratings(file)
    if not ratings:
        raise ManifestError(f"{file}: no ratings")
    items = [Item(id=name, path=file.parent / name.lstrip("/"), targets={"score": sum(r) / len(r)},
                  ratings={"score": tuple(r)}, listeners={"score": tuple(listeners[name])} if name in listeners else {})
             for name, r in ratings.items()]
    return Manifest(items=items, targets=[Target("score", SCORE_LOW, SCORE_HIGH)], source=str(file))


def load_xacle_csv(
    csv_file: Path,
    wav_dirs: Sequence[Path] | None = None,
    ratings_file: Path | None = None,
    check_audio: bool = True,
    require_scores: bool = True,
    require_text: bool = True,
) -> Manifest:
    """Read one XACLE-style CSV (`wav_file_name,text,average_score`, extra `*_score` targets).

    Audio `wav_file_name` is looked up in each of `wav_dirs` in turn (default: the CSV's folder,
    then `../wav/<split>/`). With `require_scores=False` the score column may be absent or empty.
    """
    csv_file = Path(csv_file)
    if wav_dirs is None:
        wav_dirs = default_wav_dirs(csv_file)
    required = ["wav_file_name"] + (["text"] if require_text else []) + ([SCORE_COLUMN] if require_scores else [])
    table = read_csv_rows(csv_file, required=required)
    score_columns = {SCORE_COLUMN: "score"} if SCORE_COLUMN in table.header else {}
    for column in table.header:
        if column.endswith("_score") and column != SCORE_COLUMN and column[: -len("_score")]:
            score_columns[column] = column[: -len("_score")]
    listener, listener_ids = _read_listener_ratings(ratings_file) if ratings_file is not None else ({}, {})
    # Clip names are matched as paths below the audio folder: `/audiocaps/x.wav` (as the XACLE
    # baseline's lists write them) is `audiocaps/x.wav`.
    listener = {k.lstrip("/"): v for k, v in listener.items()}
    listener_ids = {k.lstrip("/"): v for k, v in listener_ids.items()}

    items: list[Item] = []
    first_line: dict[str, int] = {}
    rated: set[str] = set()
    for line, row in table.rows:
        where = f"{csv_file}:{line}"
        name = row["wav_file_name"].strip()
        if not name:
            raise ManifestError(f"{where}: empty wav_file_name")
        if name in first_line:
            raise ManifestError(f"{where}: duplicate wav_file_name '{name}' (first on line {first_line[name]})")
        first_line[name] = line
        relative = name.lstrip("/")
        candidates = [Path(d) / relative for d in wav_dirs]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            if check_audio:
                raise ManifestError(f"{where}: audio file {candidates[0]} not found")
            path = candidates[0]
        targets: dict[str, float] = {}
        for column, target in score_columns.items():
            raw = row[column]
            if not raw.strip() and not require_scores:
                continue
            value = parse_number(raw, where, column)
            check_range(value, SCORE_LOW, SCORE_HIGH, where, column)
            targets[target] = value
            rated.add(target)
        ratings = {"score": tuple(listener[relative])} if relative in listener else {}
        ids = {"score": tuple(listener_ids[relative])} if relative in listener_ids else {}
        caption = row.get("text", "").strip() or None
        items.append(Item(id=name, path=path, caption=caption, targets=targets, system=None, ratings=ratings,
                          listeners=ids))

    if listener and items and not any(it.ratings for it in items):
        raise ManifestError(f"{ratings_file}: none of its clips is in {csv_file} (first: {next(iter(listener))!r}, "
                            f"{items[0].id!r}); its listener ratings would be ignored")
    targets_list = [Target(t, SCORE_LOW, SCORE_HIGH) for t in score_columns.values() if t in rated]
    source = str(csv_file) if ratings_file is None else f"{csv_file}, {ratings_file}"
    return Manifest(items=items, targets=targets_list, source=source)


def split_of_csv(csv_file: Path) -> str | None:
    """The split an XACLE CSV name refers to: `validation_average.csv` -> `validation`."""
    stem = Path(csv_file).stem
    if stem.endswith("_average"):
        stem = stem[: -len("_average")]
    return stem if stem in XACLE_SPLITS else None


def default_wav_dirs(csv_file: Path) -> list[Path]:
    """Where a stand-alone XACLE CSV's audio may be: its folder, then `../wav/<split>/` (or `../wav/`)."""
    csv_file = Path(csv_file)
    split = split_of_csv(csv_file)
    wav = csv_file.parent.parent / "wav"
    return [csv_file.parent, wav / split if split else wav]
