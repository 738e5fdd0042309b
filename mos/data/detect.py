"""Recognise what a user points at (XACLE, MusicEval, CSV/JSONL, audio folder) and load it."""

from __future__ import annotations

from pathlib import Path

from mos.data.captions import Captions
from mos.data.folder import find_audio_files, load_folder
from mos.data.manifest import Manifest
from mos.data.musiceval import (
    prompt_captions,
    find_musiceval_roots,
    list_candidates,
    load_musiceval,
    load_musiceval_list,
)
from mos.data.table import ColumnMap, load_table, read_csv_rows
from mos.data.xacle import (
    RATING_COLUMNS,
    SCORE_COLUMN,
    split_files,
    find_xacle_roots,
    load_xacle,
    load_xacle_csv,
    split_of_csv,
)
from mos.errors import ManifestError

NOT_A_DATASET = (
    "not a dataset: expected an XACLE tree (meta_data/*_average.csv), a MusicEval tree "
    "(sets/*_mos_list.txt), a CSV/JSONL file or a folder of audio"
)


def _needs_mapping(path: Path, header: list[str] | None) -> ManifestError:
    shown = f" (header: {', '.join(header)})" if header else ""
    return ManifestError(
        f"{path}: a generic table needs a column mapping, e.g. "
        f"path=path,target:score=mos,caption=text{shown}"
    )


def _csv_header(path: Path) -> list[str]:
    return read_csv_rows(path, allow_no_rows=True).header


def _is_xacle_header(header: list[str]) -> bool:
    return "wav_file_name" in header and (SCORE_COLUMN in header or "text" in header)


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


def _is_musiceval_list(path: Path) -> bool:
    return path.suffix.lower() == ".txt" and path.name.endswith("_list.txt")


def _musiceval_prompts(list_file: Path) -> tuple[Captions | None, Captions | None]:
    return prompt_captions(list_file.parent.parent)


def open_dataset(path: Path, columns: ColumnMap | None = None) -> dict[str, Manifest]:
    """Split name -> Manifest for whatever `path` is.

    XACLE tree -> train/validation; MusicEval tree -> train/dev (a tree with neither gives its
    test split); .csv/.jsonl file -> {"all": ...} (generic tables need `columns`; an XACLE-style
    CSV does not); MusicEval list file -> {"all": ...}; folder of audio -> {"all": ...}.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such file or directory")
    if path.is_file():
        return {"all": _open_file(path, columns, check_audio=True)}

    trees = find_xacle_roots(path)
    if trees:
        out: dict[str, Manifest] = {}
        for split in ("train", "validation"):
            if any(split_files(t, split)[0] for t in trees):
                out[split] = load_xacle(path, split)
        if not out:
            out["test"] = load_xacle(path, "test")
        return out

    me_trees = find_musiceval_roots(path)
    if me_trees:
        out = {}
        for split in ("train", "dev"):
            if any(c.is_file() for t in me_trees for c in list_candidates(t, split)):
                out[split] = load_musiceval(path, split)
        if not out:
            out["test"] = load_musiceval(path, "test")
        return out

    if find_audio_files(path):
        return {"all": load_folder(path)}
    raise ManifestError(f"{path}: {NOT_A_DATASET}")


def _open_file(path: Path, columns: ColumnMap | None, check_audio: bool) -> Manifest:
    suffix = path.suffix.lower()
    if columns is not None:
        if suffix not in (".csv", ".jsonl", ".ndjson"):
            raise ManifestError(f"{path}: a column mapping needs a .csv or .jsonl file")
        return load_table(path, columns, check_audio=check_audio)
    if suffix == ".csv":
        header = _csv_header(path)
        if _is_xacle_header(header):
            return load_xacle_csv(
                path,
                ratings_file=_xacle_csv_ratings_sibling(path),
                check_audio=check_audio,
                require_scores=SCORE_COLUMN in header,
                require_text=check_audio,
            )
        raise _needs_mapping(path, header)
    if suffix in (".jsonl", ".ndjson"):
        raise _needs_mapping(path, None)
    if _is_musiceval_list(path):
        prompts, demo = _musiceval_prompts(path)
        return load_musiceval_list(path, None, prompts, demo, check_audio=check_audio)
    raise ManifestError(f"{path}: {NOT_A_DATASET}")


def open_ratings(path: Path, columns: ColumnMap | None = None) -> Manifest:
    """Ground-truth ratings for `mos eval` from one file; the audio files need not exist.

    Accepts an XACLE `*_average.csv`, a MusicEval `*_mos_list.txt` (ids get `.wav`), or a
    generic CSV/JSONL with a column mapping. The file must hold at least one score.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise ManifestError(f"{path}: is a directory; expected a ratings file (*_average.csv, *_mos_list.txt, CSV/JSONL)")
        raise ManifestError(f"{path}: file not found")
    manifest = _open_file(path, columns, check_audio=False)
    if not manifest.targets:
        raise ManifestError(f"{path}: holds no scores, so it cannot serve as ground truth")
    return manifest
