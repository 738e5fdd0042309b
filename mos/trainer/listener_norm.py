"""`mos train --listener-norm off|on|auto`: per-listener standardisation and screening of a run's
TRAINING clips (mos.data.listeners), after the split; validation keeps the data's own means, so
the metrics stay against the official truth. The report goes to `<run>/listeners.json`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from mos.data.listeners import ListenerReport, standardise_listeners
from mos.data.manifest import Manifest
from mos.data.xacle import LISTENER_COLUMNS
from mos.errors import MosError
from mos.files import write_text_atomic
from mos.trainer.config import TrainConfig
from mos.trainer.splits import Splits

REPORT_FILE = "listeners.json"


def listener_norm_active(cfg: TrainConfig, data: Manifest, console: Console) -> bool:
    """Whether the run standardises: "on" (a MosError when `data` has no listener ids), "auto"
    when it has them (a one-line note when not), never for "off"."""
    if cfg.listener_norm == "off":
        return False
    if data.has_listeners():
        return True
    if cfg.listener_norm == "on":
        accepted = ", ".join(LISTENER_COLUMNS)
        what = ("its per-listener ratings have no listener column" if any(it.ratings for it in data.items)
                else "it has no per-listener ratings with a listener column")
        raise MosError(f"{data.source}: --listener-norm on needs listener ids, and {what} (XACLE's meta_data/<split>.csv: "
                       f"one of {accepted}; a table: listeners:NAME=COLUMN in --columns)")
    console.print(f"listener norm: skipped (auto: {data.source} has no listener ids)", markup=False)
    return False


def clean_training(cfg: TrainConfig, splits: Splits) -> tuple[Splits, ListenerReport]:
    """`splits` with its training manifest standardised and screened (validation untouched)."""
    cleaned, report = standardise_listeners(splits.train, cfg.listener_threshold)
    return replace(splits, train=cleaned), report


def write_report(run_dir: Path, report: ListenerReport, source: str) -> Path:
    """`<run_dir>/listeners.json`: the report, the file it was made from and what it applies to."""
    path = Path(run_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"source": source, "applied_to": "training clips only (validation keeps the data's own means)",
            **report.to_dict()}
    write_text_atomic(path, json.dumps(body, indent=2))
    return path
