"""The teacher of `mos distill`: an exported bundle (or a run folder's `bundle/`), and how a bundle
scores a list of clips end to end with the ONNX runtime (`mos score`'s own pipeline and writer),
which the final comparison of teacher and student uses (the teacher's knowledge of the training
clips: mos.distill.teacher_cache). Torch-free."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from mos.bundle import BUNDLE_META_FILE, Bundle, load_bundle
from mos.data.manifest import Item
from mos.errors import MosError
from mos.files import sha256_file
from mos.runtime.scorer import ScoreOptions, ScoreSummary, run_score
from mos.runtime.writers import read_rows

# The table `mos score` reads the clips from: the key, the audio path and the caption.
CLIP_COLUMNS = "id=id,path=path,caption=caption"


@dataclass
class Teacher:
    """A loaded teacher bundle and what identifies it."""

    bundle: Bundle
    name: str  # the bundle's (or its run folder's) folder name: never a local path
    sha256: str  # of its mos.json, which holds the sha256 of every model file

    @property
    def targets(self) -> list[str]:
        return self.bundle.target_names

    @property
    def uses_text(self) -> bool:
        return self.bundle.uses_text

    def record(self) -> dict[str, Any]:
        """What the student's distill.json and mos.json say about the teacher (no local paths)."""
        meta = self.bundle.meta
        encoder = (meta.get("audio") or {}).get("encoder") or {}
        return {"name": self.name, "bundle_sha256": self.sha256, "targets": self.targets,
                "audio_encoder": encoder.get("name") or encoder.get("kind"), "uses_text": self.uses_text,
                "own_validation_metrics": (meta.get("training") or {}).get("validation_metrics") or {}}


def load_teacher(source: Path) -> Teacher:
    """A bundle directory, or a run folder holding one in `bundle/` (made by `mos export RUN`)."""
    source = Path(source)
    if not source.exists():
        raise MosError(f"{source}: no such teacher (expected a run folder or an exported bundle)")
    if (source / BUNDLE_META_FILE).is_file():
        root, name = source, source.name
    elif (source / "bundle" / BUNDLE_META_FILE).is_file():
        root, name = source / "bundle", source.name
    elif (source / "checkpoints").is_dir() or (source / "config.json").is_file():
        raise MosError(f"{source}: this run folder has no bundle yet; run `mos export {source}` first, "
                       "then distill from it (the teacher is scored with the ONNX runtime)")
    else:
        raise MosError(f"{source}: not a run folder or an exported bundle (no mos.json)")
    bundle = load_bundle(root)
    return Teacher(bundle, name, sha256_file(root / BUNDLE_META_FILE))


def clip_key(item: Item, with_caption: bool) -> str:
    """The cache key of a clip: its absolute path, plus a hash of its caption when the teacher
    reads captions (the same audio with another caption is another label)."""
    key = item.path.resolve().as_posix()
    if with_caption:
        key += "#" + hashlib.sha256((item.caption or "").encode("utf-8")).hexdigest()[:12]
    return key


def write_clip_table(path: Path, items: list[Item], with_caption: bool) -> Path:
    """The clips as a table `mos score --columns id=id,path=path,caption=caption` reads (each
    key once)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "path", "caption"])
    seen: set[str] = set()
    for it in items:
        key = clip_key(it, with_caption)
        if key not in seen:
            seen.add(key)
            w.writerow([key, it.path.resolve().as_posix(), " ".join((it.caption or "").split())])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


@dataclass
class ScoreRun:
    """How a bundle scores clips: device, CPU threads (0: ONNX Runtime's default), batch size."""

    device: str = "auto"
    threads: int = 0
    batch_size: int = 0
    progress: bool = False


def score_items(bundle_dir: Path, items: list[Item], with_caption: bool, out: Path, run: ScoreRun
                ) -> tuple[dict[str, np.ndarray], ScoreSummary]:
    """Score `items` with a bundle through `mos score` (run_score, end to end: decode, windows,
    batches, the streaming writer) into `out`; returns clip key -> scores of the ok rows, and
    the run's summary (its clips/s is the end-to-end speed)."""
    table = write_clip_table(out.with_name(out.stem + ".clips.csv"), items, with_caption)
    summary = run_score(ScoreOptions(inputs=table, bundle=bundle_dir, columns=CLIP_COLUMNS, out=out, format="csv",
                                     device=run.device, threads=run.threads, batch_size=run.batch_size,
                                     progress=run.progress),
                        Console(file=io.StringIO()))
    bundle = load_bundle(bundle_dir, verify_hashes=False)
    rows = read_rows(out, "csv", bundle.target_names)
    scores = {r.id: np.array([r.scores[t] for t in bundle.target_names], dtype=np.float64)
              for r in rows if r.status == "ok" and r.scores}
    return scores, summary
