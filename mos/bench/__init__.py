"""`mos bench`: speed and memory figures of a bundle (torch only for the optional eager comparison).

`BenchOptions` and `run_bench` are imported on first use, so that loading the command
(mos.bench.command, e.g. for `mos bench --help`) does not pay for the benchmark's imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchOptions", "run_bench"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mos.bench import run

        return getattr(run, name)
    raise AttributeError(f"module 'mos.bench' has no attribute {name!r}")
