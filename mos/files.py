"""Files, shared by the trainer, export, the runtime and the encoders. Torch-free.

Atomic writes (checkpoints, run logs, bundles, score files): the new content goes to a temporary
file beside the target, is flushed to disk, then renamed over it, so a kill at any moment leaves
the old file or the new one, never a mix. `sha256_file`, the hash that pins bundles, checkpoints
and pretrained encoders; `cache_root`, where mos keeps what it can make again; `read_json`."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE_ENV = "MOS_CACHE_DIR"


def _sync_and_replace(tmp: Path, path: Path) -> None:
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Make `path` what `write(tmp)` writes into `.<name>.tmp` beside it (a kill leaves at most
    that temporary file, which the next write of `path` replaces)."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    _sync_and_replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Atomically replace a text file (UTF-8, newlines written as given)."""
    replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root(name: str) -> Path:
    """`$MOS_CACHE_DIR/<name>`, else `~/.cache/mos/<name>`: where mos keeps what it can make again
    (frozen-encoder features, converted checkpoints)."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "mos") / name


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or a one-line MosError."""
    from mos.errors import MosError, one_line

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise MosError(f"{path}: not a readable JSON file ({one_line(exc, limit=120)})") from None
    if not isinstance(data, dict):
        raise MosError(f"{path}: expected a JSON object")
    return data
