"""ONNX Runtime's own profiler on one ONNX model (audio.onnx of a bundle, or a front-end-only
model): kernel time per op type and per node, per 10 s clip.

    python benchmarks/experiments/ort_op_profile.py runs/bench/bundle/audio.onnx [BATCH]

ONNX Runtime's profile (JSON) goes to benchmarks/out/experiments/, not the current directory.
"""
import onnxruntime as ort, numpy as np, json, sys
from collections import defaultdict
from pathlib import Path
OUT = Path(__file__).resolve().parents[1] / 'out' / 'experiments'
OUT.mkdir(parents=True, exist_ok=True)
path = sys.argv[1]; bs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
so.add_session_config_entry("session.intra_op.allow_spinning", "0"); so.enable_profiling = True
so.profile_file_prefix = str(OUT / 'ort_op_profile')
s = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
feeds = {i.name: None for i in s.get_inputs()}
w = (np.random.randn(bs, 160000) * 0.1).astype(np.float32)
f = {'waveform': w, 'lengths': np.full(bs, 160000, np.int64)}
if 'text' in feeds:
    f['text'] = np.random.randn(bs, 20, 384).astype(np.float32); f['text_lengths'] = np.full(bs, 20, np.int64)
for _ in range(6): s.run(None, f)
ev = json.load(open(s.end_profiling()))
runs = [e for e in ev if e.get('name') == 'model_run']
start = runs[2]['ts']
per = defaultdict(float); pern = defaultdict(float)
for e in ev:
    if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time') and e['ts'] >= start:
        per[e['args']['op_name']] += e['dur']; pern[e['name'][:-12]] += e['dur']
tot = sum(per.values())
print('total ms/clip', tot / 4 / bs / 1000)
for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:12]: print(f'{k:24s} {v/4/bs/1000:7.3f} ms/clip {100*v/tot:5.1f}%')
print('--- nodes')
for k, v in sorted(pern.items(), key=lambda kv: -kv[1])[:25]: print(f'{k:60s} {v/4/bs/1000:7.3f}')
