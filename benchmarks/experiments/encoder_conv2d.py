"""Experiment: the encoder's Conv1d layers run as Conv2d(1 x k) with the same weights, so that
ONNX Runtime's NCHWc convolution path applies. Whole audio model, ORT CPU, 10 s clips.

    python benchmarks/experiments/encoder_conv2d.py runs/bench/checkpoints/best.pt

A change for mos/model/audio_encoder.py (MaskedConvBlock.conv/skip) or for the export wrapper;
this script only measures it (nothing in the package changes). The two ONNX files go to
benchmarks/out/experiments/.
"""
import sys, time, statistics, numpy as np, torch
from pathlib import Path
from torch import nn
from mos.trainer.checkpoint import load_model
from mos.export.wrapper import AudioExport, audio_input_names, audio_output_names, audio_dynamic_axes
from mos.export.onnx_io import export_torchscript
from mos.export.build import _trace_inputs
from mos.model import audio_encoder as ae
import onnxruntime as ort

class Conv1dAs2d(nn.Module):
    def __init__(self, c: nn.Conv1d):
        super().__init__()
        self.c = nn.Conv2d(c.in_channels, c.out_channels, (1, c.kernel_size[0]), stride=(1, c.stride[0]), padding=(0, c.padding[0]))
        self.c.weight.data = c.weight.data.unsqueeze(2).clone(); self.c.bias.data = c.bias.data.clone()
    def forward(self, x):
        return self.c(x.unsqueeze(2)).squeeze(2)

OUT = Path(__file__).resolve().parents[1] / 'out' / 'experiments'
OUT.mkdir(parents=True, exist_ok=True)
ck = Path(sys.argv[1])
m1, _ = load_model(ck); m2, _ = load_model(ck)
for blk in m2.audio_encoder.blocks:
    blk.conv = Conv1dAs2d(blk.conv)
    if blk.skip is not None: blk.skip = Conv1dAs2d(blk.skip)
args = _trace_inputs(m1)
with torch.no_grad():
    print('torch diff', (m1.scores(*args) - m2.scores(*args)).abs().max().item())
ins, outs = audio_input_names(m1), audio_output_names(m1)
for name, m in (('conv1d', m1), ('conv2d', m2)):
    export_torchscript(AudioExport(m), args, OUT / f'encoder_{name}.onnx', 17, ins, outs, audio_dynamic_axes(ins, outs))
def sess(p, t):
    so = ort.SessionOptions(); so.intra_op_num_threads = t; so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(p, so, providers=['CPUExecutionProvider'])
rng = np.random.default_rng(0)
n = 32
for t in (1, 2):
    ss = {k: sess(str(OUT / f'encoder_{k}.onnx'), t) for k in ('conv1d', 'conv2d')}
    for bs in (1, 8):
        feeds = [{'waveform': (rng.standard_normal((bs, 160000)) * 0.1).astype(np.float32), 'lengths': np.full(bs, 160000, np.int64),
                  'text': rng.standard_normal((bs, 16, 384)).astype(np.float32), 'text_lengths': np.full(bs, 16, np.int64)} for _ in range(n // bs)]
        o = [ss[k].run(None, feeds[0])[0] for k in ss]
        res = {k: [] for k in ss}
        for _ in range(5):
            for k, s in ss.items():
                t0 = time.perf_counter()
                for f in feeds: s.run(None, f)
                res[k].append(n / (time.perf_counter() - t0))
        print(f'threads {t} batch {bs}:', {k: round(statistics.median(v), 1) for k, v in res.items()}, 'clips/s; ort diff', float(np.abs(o[0] - o[1]).max()))
