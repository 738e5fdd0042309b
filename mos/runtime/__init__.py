"""Torch-free scoring with an exported bundle: ONNX Runtime sessions, reader pool, batching, writers."""

from mos.runtime.engine import EngineOptions, ScoreEngine
from mos.runtime.scorer import ScoreOptions, ScoreSummary, format_summary, run_score
from mos.runtime.session import SessionConfig, import_onnxruntime, open_session

__all__ = [
    "EngineOptions",
    "ScoreEngine",
    "ScoreOptions",
    "ScoreSummary",
    "SessionConfig",
    "format_summary",
    "import_onnxruntime",
    "open_session",
    "run_score",
]
