"""Find dataset trees (XACLE, MusicEval) at a folder or up to two levels below it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path


def find_trees(root: Path, is_tree: Callable[[Path], bool], inner_names: Collection[str], depth: int = 2) -> list[Path]:
    """Folders for which `is_tree` holds: `root` itself first, then up to `depth` levels below it
    (sorted, hidden folders skipped, never descending into a tree or into its `inner_names`)."""
    root = Path(root)
    found = [root] if is_tree(root) else []
    level = [root] if root.is_dir() else []
    for _ in range(depth):
        nxt: list[Path] = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                if is_tree(child):
                    found.append(child)
                elif child.name not in inner_names:
                    nxt.append(child)
        level = nxt
    return found
