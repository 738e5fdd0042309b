"""Experiment: peak RSS of `mos score` with the caption-feature cache capped at CAP_MB instead of
mos.runtime.text.TextEncoder's default (256 MB); one process per call, 0.5 s clips, one distinct
caption per file.

    python benchmarks/experiments/text_cache_memory.py CAP_MB FILES [BUNDLE]

The generated clips are written under benchmarks/out/experiments/ and removed afterwards.
"""
import sys, json, tempfile
from pathlib import Path
import mos.runtime.text as T
cap = int(sys.argv[1]) << 20
orig = T.TextEncoder.__init__
def init(self, *a, **k):
    k["cache_bytes"] = cap
    orig(self, *a, **k)
T.TextEncoder.__init__ = init
from mos.bench import workload as wl
from mos.bench.memory import probe
OUT = Path(__file__).resolve().parents[1] / "out" / "experiments"
OUT.mkdir(parents=True, exist_ok=True)
with tempfile.TemporaryDirectory(prefix="text_cache_memory-", dir=OUT) as tmp:
    root = Path(tmp)
    w = wl.generate(root, int(sys.argv[2]), 0.5, 16000, seed=7, distinct_audio=100)
    print(json.dumps(probe({"bundle": sys.argv[3] if len(sys.argv) > 3 else "runs/bench/bundle", "inputs": str(w.inputs), "captions": str(w.captions_csv), "out": str(root / "s.csv"), "threads": 2, "device": "cpu"})))
