"""What to score: a folder, a list file, a dataset tree or file, or one audio file, with captions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mos.audio import AUDIO_EXTENSIONS
from mos.data.captions import Captions, load_captions
from mos.data.folder import find_audio_files
from mos.data.manifest import Item
from mos.data.musiceval import find_musiceval_roots, list_candidates, load_musiceval, load_musiceval_list, prompt_captions
from mos.data.table import read_text
from mos.data.xacle import find_xacle_roots, load_xacle, load_xacle_csv, split_files
from mos.errors import ManifestError, MosError

LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class Job:
    """One file to score: its id (the output's join key), path, caption, and an error known
    before decoding (missing or ambiguous caption)."""

    id: str
    path: Path
    caption: str | None = None
    error: str | None = None


@dataclass
class InputSet:
    """The resolved inputs: jobs in scoring order, what they came from, and ids seen twice."""

    jobs: list[Job]
    source: str
    duplicate_ids: list[str]


def parse_caption_columns(spec: str | None) -> tuple[str | None, str | None]:
    """`id_col,text_col` -> the two column names (None, None when not given)."""
    if spec is None:
        return None, None
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise MosError(f"--caption-columns {spec!r}: expected two column names, 'id_col,text_col'")
    return parts[0], parts[1]


def read_caption_file(path: Path, columns: str | None = None) -> Captions:
    """A captions CSV (`wav_file_name,text`, or the columns named) or a MusicEval prompt file."""
    id_col, text_col = parse_caption_columns(columns)
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: captions file not found" if not path.exists() else f"{path}: not a file")
    return load_captions(path, id_col, text_col)


def _is_musiceval_list(path: Path) -> bool:
    return path.name.endswith("_list.txt") and path.parent.name == "sets"


def read_list_file(path: Path) -> list[Item]:
    """One audio path per line (relative to the list's folder); blank lines and `#` comments skipped."""
    items: list[Item] = []
    for line in read_text(path).splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        file = Path(entry)
        items.append(Item(id=file.as_posix(), path=file if file.is_absolute() else path.parent / file))
    if not items:
        raise ManifestError(f"{path}: empty list file (expected one audio path per line)")
    return items


def _dataset_items(path: Path) -> tuple[list[Item], str] | None:
    """Items of an XACLE or MusicEval tree (missing audio becomes an error row later), or None."""
    xacle = find_xacle_roots(path)
    if xacle:
        splits = [s for s in ("train", "validation") if any(split_files(t, s)[0] for t in xacle)] or ["test"]
        items = [it for s in splits for it in load_xacle(path, s, check_audio=False).items]
        return items, f"XACLE {'+'.join(splits)} at {path}"
    musiceval = find_musiceval_roots(path)
    if musiceval:
        splits = [
            s for s in ("train", "dev") if any(c.is_file() for t in musiceval for c in list_candidates(t, s))
        ] or ["test"]
        items = [it for s in splits for it in load_musiceval(path, s, check_audio=False).items]
        return items, f"MusicEval {'+'.join(splits)} at {path}"
    return None


def _items_for(path: Path) -> tuple[list[Item], str]:
    if not path.exists():
        raise ManifestError(f"{path}: no such file or directory")
    if path.is_dir():
        found = _dataset_items(path)
        if found is not None:
            return found
        files = find_audio_files(path)
        if not files:
            raise ManifestError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
        return [Item(id=f.relative_to(path).as_posix(), path=f) for f in files], f"folder {path}"
    suffix = path.suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        return [Item(id=path.name, path=path)], f"file {path}"
    if _is_musiceval_list(path):
        prompts, demo = prompt_captions(path.parent.parent)
        return load_musiceval_list(path, None, prompts, demo, check_audio=False).items, f"list {path}"
    if suffix in LIST_SUFFIXES:
        return read_list_file(path), f"list {path}"
    if suffix == ".csv":
        manifest = load_xacle_csv(path, check_audio=False, require_scores=False, require_text=False)
        return manifest.items, f"table {path}"
    raise ManifestError(
        f"{path}: not something to score: expected a folder of audio, a list file (.txt/.lst, one path "
        f"per line), an XACLE/MusicEval dataset (tree, *_average.csv, sets/*_list.txt) or an audio file"
    )


def _caption_for(item: Item, captions: Captions | None, needs_text: bool) -> tuple[str | None, str | None]:
    """(caption, error): --captions wins over the dataset's own caption."""
    if captions is not None:
        if captions.is_duplicate(item.id):
            key = captions.resolve(item.id)
            line = captions.lines.get(key or "", 0)
            return None, f"{item.path}: ambiguous caption: '{key}' has two different texts in {captions.source} (line {line})"
        text = captions.lookup(item.id)
        if text:
            return text, None
    if item.caption:
        return item.caption, None
    if not needs_text:
        return None, None
    if captions is not None:
        return None, f"{item.path}: no caption for '{item.id}' in {captions.source}"
    return None, f"{item.path}: no caption (this model needs one: pass --captions FILE)"


def resolve_inputs(path: Path, captions: Captions | None, needs_text: bool) -> InputSet:
    """Jobs for `path` in order, each with its caption or its caption error; ids are unique
    (later repeats are dropped and listed in `duplicate_ids`)."""
    items, source = _items_for(Path(path))
    jobs: list[Job] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for item in items:
        if item.id in seen:
            duplicates.append(item.id)
            continue
        seen.add(item.id)
        caption, error = _caption_for(item, captions, needs_text)
        jobs.append(Job(id=item.id, path=item.path, caption=caption, error=error))
    return InputSet(jobs=jobs, source=source, duplicate_ids=duplicates)
