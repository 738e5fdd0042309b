"""Experiment: dynamic int8 of text.onnx on MatMul only (embeddings and LayerNorm stay fp32),
per-channel weights. Speed per caption and how close the features stay to fp32.

    python benchmarks/experiments/text_int8.py runs/bench/bundle

Caveat: dynamic quantization picks activation scales per run, so a caption's features depend
slightly on the other captions in its batch; a shipped variant should be static (calibrated on
captions) or run one caption per call. The int8 model goes to benchmarks/out/experiments/text.int8.onnx.
"""
import sys
from pathlib import Path
import time, statistics, numpy as np, onnxruntime as ort
from onnxruntime.quantization import quantize_dynamic, QuantType
from mos.bench.workload import caption
from mos.runtime.text import load_tokenizer
BUNDLE = sys.argv[1] if len(sys.argv) > 1 else 'runs/bench/bundle'
src = f'{BUNDLE}/text.onnx'
OUT = Path(__file__).resolve().parents[1] / 'out' / 'experiments'
OUT.mkdir(parents=True, exist_ok=True)
dst = str(OUT / 'text.int8.onnx')
quantize_dynamic(src, dst, op_types_to_quantize=['MatMul'], weight_type=QuantType.QInt8, per_channel=True)
tok = load_tokenizer('' + BUNDLE + '/tokenizer.json', 64)
caps = [caption(k) for k in range(256)]
enc = tok.encode_batch(caps)
def feeds(batch):
    w = max(len(e.ids) for e in batch)
    ids = np.zeros((len(batch), w), np.int64); m = np.zeros_like(ids)
    for i, e in enumerate(batch): ids[i, :len(e.ids)] = e.ids; m[i, :len(e.ids)] = 1
    return {'input_ids': ids, 'attention_mask': m}
def sess(p, t=2):
    so = ort.SessionOptions(); so.intra_op_num_threads = t; so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(p, so, providers=['CPUExecutionProvider'])
ss = {'fp32': sess(src), 'int8-matmul': sess(dst)}
fs = [feeds(enc[i:i+64]) for i in range(0, 256, 64)]
outs = {k: [s.run(None, f)[0] for f in fs] for k, s in ss.items()}
# mean-pooled cosine per caption
cos = []; mx = 0
for a, b, f in zip(outs['fp32'], outs['int8-matmul'], fs):
    m = f['attention_mask'][..., None]
    pa = (a * m).sum(1) / m.sum(1); pb = (b * m).sum(1) / m.sum(1)
    cos += list((pa * pb).sum(1) / np.linalg.norm(pa, axis=1) / np.linalg.norm(pb, axis=1))
    tokcos = ((a*b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))[f['attention_mask'] == 1]
    mx = min(mx, tokcos.min()) if mx else tokcos.min()
print('pooled cosine min/median', np.min(cos), np.median(cos), 'token cosine min', mx)
res = {k: [] for k in ss}
for _ in range(5):
    for k, s in ss.items():
        t0 = time.perf_counter()
        for f in fs: s.run(None, f)
        res[k].append((time.perf_counter() - t0) / 256 * 1000)
print({k: round(statistics.median(v), 2) for k, v in res.items()}, 'ms/caption (2 threads, batch 64)')
import os; print({k: os.path.getsize(p)/1e6 for k, p in (('fp32', src), ('int8', dst))})
