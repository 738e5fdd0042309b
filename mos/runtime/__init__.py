"""Torch-free scoring with an exported bundle: ONNX Runtime sessions, reader pool, batching, writers.

The names below load their module on first use (`from mos.runtime import ScoreEngine` works as
usual), so importing a submodule alone, e.g. mos.runtime.command for `mos score --help`, does not
load numpy or ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULE_OF = {
    "EngineOptions": "mos.runtime.engine",
    "ScoreEngine": "mos.runtime.engine",
    "ScoreOptions": "mos.runtime.scorer",
    "ScoreSummary": "mos.runtime.scorer",
    "format_summary": "mos.runtime.scorer",
    "run_score": "mos.runtime.scorer",
    "SessionConfig": "mos.runtime.session",
    "import_onnxruntime": "mos.runtime.session",
    "open_session": "mos.runtime.session",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'mos.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)


if TYPE_CHECKING:
    from mos.runtime.engine import EngineOptions, ScoreEngine
    from mos.runtime.scorer import ScoreOptions, ScoreSummary, format_summary, run_score
    from mos.runtime.session import SessionConfig, import_onnxruntime, open_session
