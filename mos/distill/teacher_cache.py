"""The teacher's knowledge of every clip for `mos distill`: its scores and its pooled audio embedding
(a bundle exported before the embedding output: scores only), from one ONNX Runtime run of the
teacher bundle per clip, cached on disk. Torch-free.

The cache lives in `<root>/<teacher bundle sha256[:16]>/` (root: `--teacher-cache`, default
$MOS_CACHE_DIR/teacher or ~/.cache/mos/teacher), keyed by the clip's content (sha256 of the file's
bytes; plus a hash of the caption when the teacher reads captions, since its scores depend on it).
Each chunk of clips is written as one shard file, atomically, as soon as it is done: a killed run
keeps every finished chunk, and any later run with the same teacher (another seed, another
student size, a resumed run) reuses what is there and runs the teacher on the rest only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mos.audio import read_audio
from mos.data.manifest import Item
from mos.distill.teacher import Teacher
from mos.errors import MosError, one_line
from mos.files import cache_root, replace_atomically, sha256_file

# Clips per teacher run and per shard file.
CHUNK = 64


def default_root() -> Path:
    """$MOS_CACHE_DIR/teacher, else ~/.cache/mos/teacher."""
    return cache_root("teacher")


def content_key(path: Path, caption: str | None, with_caption: bool) -> str:
    """sha256 of the file's bytes, plus `#` and a hash of the caption when the teacher reads captions."""
    key = sha256_file(Path(path))
    if with_caption:
        key += "#" + hashlib.sha256((caption or "").encode("utf-8")).hexdigest()[:16]
    return key


@dataclass
class Knowledge:
    """What the teacher said about clips: scores [n, n_targets] (teacher order) and pooled audio
    embeddings [n, dim], row i for keys[i]."""

    keys: list[str]
    scores: np.ndarray
    embeddings: np.ndarray


class TeacherCache:
    """The shards of one teacher under `root`: key -> (scores, embedding)."""

    def __init__(self, root: Path, teacher: Teacher) -> None:
        self.dir = Path(root) / teacher.sha256[:16]
        self.dim = teacher.bundle.embedding_dim  # 0: a bundle without the embedding output (scores only)
        self.n_targets = len(teacher.targets)
        self.scores: dict[str, np.ndarray] = {}
        self.embeddings: dict[str, np.ndarray] = {}
        self._next = 0
        if self.dir.is_dir():
            for shard in sorted(self.dir.glob("part-*.npz")):
                self._load(shard)

    def _load(self, shard: Path) -> None:
        try:
            with np.load(shard, allow_pickle=False) as z:
                keys, scores, emb = [str(k) for k in z["keys"]], z["scores"], z["embeddings"]
        except Exception as exc:  # a damaged shard is made again, not trusted
            shard.unlink(missing_ok=True)
            raise MosError(f"{shard}: unreadable teacher cache shard ({one_line(exc, limit=80)}); removed, "
                           "run again to remake it") from None
        if emb.shape[1:] != (self.dim,) or scores.shape[1:] != (self.n_targets,):
            raise MosError(f"{shard}: holds {emb.shape[1:]} embeddings and {scores.shape[1:]} scores, this teacher "
                           f"gives ({self.dim},) and ({self.n_targets},)")
        for k, s, e in zip(keys, scores, emb):
            self.scores[k], self.embeddings[k] = s.astype(np.float64), e.astype(np.float32)
        self._next = max(self._next, int(shard.stem.split("-")[1]) + 1)

    def __contains__(self, key: str) -> bool:
        return key in self.embeddings

    def __len__(self) -> int:
        return len(self.embeddings)

    def add(self, keys: list[str], scores: np.ndarray, embeddings: np.ndarray) -> None:
        """Keep and write one shard (atomically: a kill leaves it whole or absent)."""
        if not keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        shard = self.dir / f"part-{self._next:06d}.npz"
        self._next += 1

        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:
                np.savez(f, keys=np.array(keys), scores=scores.astype(np.float64),
                         embeddings=embeddings.astype(np.float32))

        replace_atomically(shard, write)
        for k, s, e in zip(keys, scores, embeddings):
            self.scores[k], self.embeddings[k] = s, e

    def knowledge(self, keys: list[str]) -> Knowledge:
        return Knowledge(keys, np.stack([self.scores[k] for k in keys]), np.stack([self.embeddings[k] for k in keys]))


@dataclass
class TeachResult:
    """Clip key per item (None: unreadable), and how many clips the teacher ran on now."""

    keys: list[str | None]
    taught: int
    cached: int
    failed: list[str]
    clips_per_s: float


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for it in items:
        chunk.append(it)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def teach(teacher: Teacher, items: Iterable[Item], cache: TeacherCache, device: str = "auto", threads: int = 0,
          batch_size: int = 0, note: Callable[[int], None] | None = None, chunk_size: int = CHUNK) -> TeachResult:
    """Run the teacher on every item the cache does not know yet, in chunks of `chunk_size` clips (one
    shard each); `items` may be a stream. An unreadable clip is named in `failed` and gets key
    None; the rest go on. `note(done)` is called after each chunk (progress)."""
    import time

    from mos.runtime.engine import EngineOptions, ScoreEngine

    engine: ScoreEngine | None = None
    with_caption = teacher.uses_text
    keys: list[str | None] = []
    failed: list[str] = []
    taught = cached = 0
    seconds = 0.0
    for chunk in _chunks(items, chunk_size):
        todo: list[tuple[str, np.ndarray, str | None]] = []
        for it in chunk:
            try:
                key = content_key(it.path, it.caption, with_caption)
            except OSError as exc:
                failed.append(one_line(exc, path=it.path, limit=120))
                keys.append(None)
                continue
            if key in cache or any(key == k for k, _, _ in todo):
                keys.append(key)
                cached += key in cache
                continue
            try:
                wave = read_audio(it.path, teacher.bundle.sample_rate)
                if wave.size == 0:
                    raise MosError("no audio samples")
            except Exception as exc:  # one bad clip is reported and left out; the rest are taught
                failed.append(one_line(exc, path=it.path, limit=120))
                keys.append(None)
                continue
            if with_caption and not it.caption:
                failed.append(f"{it.path}: no caption (the teacher reads captions)")
                keys.append(None)
                continue
            todo.append((key, wave, it.caption))
            keys.append(key)
        if todo:
            if engine is None:
                engine = ScoreEngine(teacher.bundle, EngineOptions(device=device, threads=threads, batch_size=batch_size))
            t0 = time.perf_counter()
            waves, captions = [w for _, w, _ in todo], [c if with_caption else None for _, _, c in todo]
            if cache.dim:
                rows, emb = engine.embed_arrays(waves, captions)
            else:
                rows, emb = engine.score_arrays(waves, captions), np.zeros((len(todo), 0), dtype=np.float32)
            seconds += time.perf_counter() - t0
            cache.add([k for k, _, _ in todo], rows[:, : cache.n_targets], emb)
            taught += len(todo)
        if note is not None:
            note(len(keys))
    return TeachResult(keys, taught, cached, failed, taught / seconds if seconds > 0 else 0.0)
