"""Clips from the data a run was trained on: int8 calibration (training clips) and the int8
accuracy check (validation clips with their ratings), read with the runtime's own decoder."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mos.audio import read_audio
from mos.errors import MosError

if TYPE_CHECKING:
    from mos.export.report import ExportReport


@dataclass
class RunClips:
    calibration: list[np.ndarray]
    calibration_captions: list[str] | None
    validation: tuple[list[np.ndarray], list[str] | None, np.ndarray] | None
    source: str


def run_clips(run_dir: Path, sample_rate: int, n_calibration: int = 32, n_validation: int = 96,
              max_seconds: float = 10.0) -> RunClips | None:
    """None when the run folder does not say where its data is or the data is gone."""
    config = run_dir / "config.json"
    if not config.is_file():
        return None
    from mos.data.table import parse_column_spec
    from mos.trainer.splits import resolve_splits

    train = json.loads(config.read_text(encoding="utf-8"))["train"]
    data = Path(train["data"]) if train.get("data") else Path(train["demo_dir"]) / "XACLE_dataset"
    if not data.exists():
        return None
    columns = parse_column_spec(train["columns"]) if train.get("columns") else None
    try:
        splits = resolve_splits(data, columns, train.get("val_fraction", 0.2), train.get("seed", 0))
    except MosError:
        return None
    limit = int(max_seconds * sample_rate)
    uses_text = train.get("text_encoder", "minilm") != "none"
    rng = np.random.default_rng(0)
    cal_items = [splits.train.items[i] for i in sorted(rng.choice(len(splits.train.items),
                                                                   min(n_calibration, len(splits.train.items)), replace=False))]
    val_items = splits.validation.items[:n_validation]
    cal = [read_audio(it.path, sample_rate)[:limit] for it in cal_items]
    val = [read_audio(it.path, sample_rate)[:limit] for it in val_items]
    names = splits.validation.target_names
    ratings = np.array([[it.targets[n] for n in names] for it in val_items], dtype=np.float64)
    return RunClips(
        calibration=cal,
        calibration_captions=[it.caption or "" for it in cal_items] if uses_text else None,
        validation=(val, [it.caption or "" for it in val_items] if uses_text else None, ratings),
        source=str(data),
    )


def export_run(source: Path, out: Path | None = None, opset: int = 17, quantize: str | None = None,
               fp16: bool = False, verify: bool = True, log: Callable[[str], None] = print) -> "ExportReport":
    """`mos export`: export a run or checkpoint; int8 is calibrated on the run's own training clips
    and its accuracy change measured on the run's validation clips when that data is still there."""
    from mos.export.build import export_bundle
    from mos.trainer.checkpoint import find_checkpoint, load_model

    if quantize not in (None, "int8"):
        raise MosError(f"--quantize {quantize}: only 'int8' is supported")
    clips = None
    if quantize:
        model, _ = load_model(source)
        run_dir = source if source.is_dir() else find_checkpoint(source).parent.parent
        clips = run_clips(run_dir, model.cfg.sample_rate)
        if clips is None:
            log("int8: the run's training data is not available; calibrating on synthetic clips")
    return export_bundle(
        source, out, opset=opset, quantize=quantize, fp16=fp16, verify=verify,
        calibration_clips=clips.calibration if clips else None,
        calibration_captions=clips.calibration_captions if clips else None,
        validation=clips.validation if clips else None,
    )
