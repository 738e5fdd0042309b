"""`mos bench`: speed and memory figures of a bundle (torch only for the optional eager comparison)."""

from mos.bench.run import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
