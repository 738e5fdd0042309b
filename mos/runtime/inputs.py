"""Jobs from a manifest: each clip to score with its caption, or the caption problem known before decoding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mos.data.captions import CaptionLookup, Captions, load_captions
from mos.data.manifest import Item, Manifest
from mos.errors import ManifestError, MosError


@dataclass(frozen=True)
class Job:
    """One file to score: its id (the output's join key), path, caption, and an error known
    before decoding (missing or ambiguous caption)."""

    id: str
    path: Path
    caption: str | None = None
    error: str | None = None


@dataclass
class JobSet:
    """Jobs in scoring order and the ids seen more than once (scored once)."""

    jobs: list[Job]
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


def _no_key_matches(captions: Captions, items: list[Item]) -> MosError:
    keys = list(captions.texts) or sorted(captions.duplicates)
    return MosError(
        f"{captions.source}: no caption key matches any input: keys look like '{keys[0] if keys else ''}', "
        f"the inputs' ids like '{items[0].id}' (an id is the path relative to the folder scored; a key "
        "matches it by that path, or by file name where only one input has that name)"
    )


def _caption_job(item: Item, found: CaptionLookup, captions: Captions | None) -> Job:
    """--captions wins over the dataset's own caption; an ambiguous key is an error, never a guess."""
    if found.error:
        return Job(item.id, item.path, error=f"{item.path}: {found.error}")
    if found.text:
        return Job(item.id, item.path, caption=found.text)
    if item.caption:
        return Job(item.id, item.path, caption=item.caption)
    if captions is not None:
        return Job(item.id, item.path, error=f"{item.path}: no caption for '{item.id}' in {captions.source}")
    return Job(item.id, item.path, error=f"{item.path}: no caption (this model needs one: pass --captions FILE)")


def make_jobs(manifest: Manifest, captions: Captions | None, needs_text: bool) -> JobSet:
    """Jobs for the manifest's clips in order (a repeated id is scored once and listed).

    An audio-only model (`needs_text` False) takes no caption at all. Otherwise each clip gets
    its caption from `captions` (see `Captions.match`) or its own; a clip with none, or with an
    ambiguous key, gets an error row. When `captions` matches no input at all, MosError up front.
    """
    items: list[Item] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for item in manifest.items:
        if item.id in seen:
            duplicates.append(item.id)
            continue
        seen.add(item.id)
        items.append(item)
    if not needs_text:
        return JobSet([Job(it.id, it.path) for it in items], duplicates)
    found = captions.match([it.id for it in items]) if captions is not None else [CaptionLookup()] * len(items)
    if captions is not None and items and not any(f.key or f.error for f in found):
        raise _no_key_matches(captions, items)
    return JobSet([_caption_job(it, f, captions) for it, f in zip(items, found)], duplicates)
