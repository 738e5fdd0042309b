"""A bare folder of audio files (recursive) as an unrated manifest."""

from __future__ import annotations

import os
from pathlib import Path

from mos.audio import AUDIO_EXTENSIONS
from mos.data.manifest import Item, Manifest
from mos.errors import ManifestError


def find_audio_files(root: Path) -> list[Path]:
    """Audio files under `root` (recursive, case-insensitive extension, hidden entries skipped), sorted."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                found.append(Path(folder) / name)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


def load_folder(root: Path) -> Manifest:
    """Every audio file under `root`; id = path relative to `root` as a posix string; no targets."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a directory")
    files = find_audio_files(root)
    if not files:
        raise ManifestError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
    items = [Item(id=f.relative_to(root).as_posix(), path=f) for f in files]
    return Manifest(items=items, targets=[], source=str(root))
