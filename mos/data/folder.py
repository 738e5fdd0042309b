"""Unrated audio as a manifest: a folder (recursive, with what was left out and why) or a list file of paths."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mos.audio import is_audio_name
from mos.data.manifest import Item, Manifest
from mos.data.table import read_text
from mos.errors import ManifestError

NOT_DECODABLE = "not a format the installed libsndfile reads"
HIDDEN = "hidden"


@dataclass
class Skipped:
    """Files of one kind left out of a folder scan: how many, one example (relative path), why."""

    kind: str  # the extension (".m4a", "no extension") or "hidden"
    count: int
    example: str
    reason: str

    def describe(self) -> str:
        return f"{self.count} {self.kind} (e.g. {self.example})"


def describe_skipped(skipped: list[Skipped]) -> str:
    """`3 file(s) not read: not a format ...: 2 .m4a (e.g. a.m4a), 1 .txt (e.g. b.txt); hidden: ...`."""
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(s.reason, []).append(s.describe())
    count = sum(s.count for s in skipped)
    return f"{count} file(s) not read: " + "; ".join(f"{reason}: {', '.join(kinds)}" for reason, kinds in by_reason.items())


@dataclass
class FolderScan:
    """Audio files under a folder (sorted by relative path) and the files left out, by kind."""

    root: Path
    files: list[Path]
    skipped: list[Skipped] = field(default_factory=list)



def _kind(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix else "no extension"


def scan_folder(root: Path) -> FolderScan:
    """Walk `root` (recursive): files with an extension libsndfile reads are kept; the others,
    and hidden files and folders (name starting with '.'), are counted by kind in `skipped`."""
    root = Path(root)
    found: list[Path] = []
    skipped: dict[str, Skipped] = {}

    def skip(kind: str, path: Path, reason: str) -> None:
        rel = path.relative_to(root).as_posix()
        if kind in skipped:
            skipped[kind].count += 1
            skipped[kind].example = min(skipped[kind].example, rel)
        else:
            skipped[kind] = Skipped(kind, 1, rel, reason)

    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for d in [d for d in dirs if d.startswith(".")]:
            skip(HIDDEN, here / d, "hidden files and folders are not read")
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                skip(HIDDEN, here / name, "hidden files and folders are not read")
            elif is_audio_name(name):
                found.append(here / name)
            else:
                skip(_kind(name), here / name, NOT_DECODABLE)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    order = sorted(skipped.values(), key=lambda s: (s.kind == HIDDEN, -s.count, s.kind))
    return FolderScan(root, found, order)


def find_audio_files(root: Path) -> list[Path]:
    """Audio files under `root` (recursive, case-insensitive extension, hidden entries skipped), sorted."""
    return scan_folder(root).files


def no_audio_error(scan: FolderScan) -> ManifestError:
    """The error for a folder without a single file to read, naming what it does hold."""
    held = f" ({describe_skipped(scan.skipped)})" if scan.skipped else ""
    return ManifestError(f"{scan.root}: no audio files (of the formats libsndfile reads) in this folder{held}")


def load_folder(root: Path) -> Manifest:
    """Every audio file under `root`; id = path relative to `root` as a posix string; no targets."""
    return folder_manifest(scan_folder_checked(root))


def scan_folder_checked(root: Path) -> FolderScan:
    """`scan_folder`, with a ManifestError for a path that is not a folder or holds no audio."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a directory")
    scan = scan_folder(root)
    if not scan.files:
        raise no_audio_error(scan)
    return scan


def folder_manifest(scan: FolderScan) -> Manifest:
    """The unrated manifest of a scan's files (id = path relative to the folder)."""
    items = [Item(id=f.relative_to(scan.root).as_posix(), path=f) for f in scan.files]
    return Manifest(items=items, targets=[], source=str(scan.root))


def load_list_file(path: Path) -> Manifest:
    """One audio path per line (relative to the list's folder, or absolute); blank lines and `#`
    comments skipped; id = the path as written. Any file type: what cannot be decoded fails later."""
    path = Path(path)
    items: list[Item] = []
    for line in read_text(path).splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        file = Path(entry)
        items.append(Item(id=file.as_posix(), path=file if file.is_absolute() else path.parent / file))
    if not items:
        raise ManifestError(f"{path}: empty list file (expected one audio path per line)")
    return Manifest(items=items, targets=[], source=str(path))
