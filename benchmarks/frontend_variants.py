"""The log-mel front end is the largest single cost of the edge model on CPU (see README.md,
"Where the time goes"). This script measures cheaper, numerically equivalent formulations.

    python benchmarks/frontend_variants.py [--repeats 5] [--out benchmarks/results/frontend_variants.json]

Variants, each exported alone to ONNX (TorchScript exporter, opset 17, dynamic batch/length) and
run in ONNX Runtime as the runtime opens sessions:
- conv:    the direct DFT (mos/model/frontend.py before the factorised one): Conv1d(1 -> 2x201,
           kernel 400, stride 160) with a windowed DFT basis, power, mel MatMul, log.
           402 x 400 multiply-adds per frame.
- matmul:  the same basis, frames built by slicing 160-sample blocks (no gather) and one MatMul.
- folded:  frames as in `matmul`, then the symmetry of the periodic Hann window about sample
           200 is used: with the phase referenced to the frame centre (|X_k| is unchanged),
           Re X_k = sum_m w(m) (x[200+m] + x[200-m]) cos(2 pi k m / 512) and
           Im X_k = -sum_m w(m) (x[200+m] - x[200-m]) sin(2 pi k m / 512), so 200 + 199 taps
           instead of 2 x 400: half the multiply-adds, same power spectrum up to rounding.
- fftA:    two-stage Cooley-Tukey, n_fft = A x C (mos.model.frontend.Spectrum with decimation A):
           a grouped Conv1d straight on the waveform viewed as [B, A, N/A] (stride hop/A, kernel
           C: per n1 the C-point DFT of the windowed decimated sequence, bins 0..C/2), a
           transpose, one MatMul batched over those bins (the A-point sums with the twiddles,
           bins 0..n_fft/2 only), power, and the mel MatMul on the factorised row order (no
           gather). "(LogMel)" marks the A that LogMel uses (`decimation`); for A = 20:
           20 x 22 x 20 + 11 x 44 x 40 = 28k multiply-adds per frame before the mel.
Same log-mel (max abs difference printed), same frame counts, padding invariance kept (frames
only read masked samples).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


class Framed(nn.Module):
    """Frames [B, T, win] from 160-sample blocks: frame i = padded[i*hop : i*hop + win]."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.hop, self.win = base.hop, base.win
        assert self.win <= 3 * self.hop, "framing by three blocks needs win <= 3 * hop"

    def frames(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hop, win = self.hop, self.win
        idx = torch.arange(waveform.shape[1], device=waveform.device)
        x = waveform * (idx[None, :] < lengths[:, None]).to(waveform.dtype)
        n = x.shape[1]
        t = torch.div(n, hop, rounding_mode="floor") + 1  # frames, as LogMel.frame_lengths
        right = (t + 2) * hop - n - win // 2
        b = x.shape[0]
        x = torch.cat([x.new_zeros(b, win // 2), x, x.new_zeros(b, 1).expand(b, right)], dim=1)
        blocks = x.reshape(b, -1, hop)  # [B, T + 2, hop]
        tail = win - 2 * hop
        return torch.cat([blocks[:, :-2], blocks[:, 1:-1], blocks[:, 2:, :tail]], dim=2)  # [B, T, win]


class ConvLogMel(nn.Module):
    """The front end before the factorised DFT: Conv1d(1 -> 2F, kernel win, stride hop) with the
    windowed DFT basis, power, mel MatMul, log."""

    def __init__(self, base: nn.Module, n_fft: int) -> None:
        super().__init__()
        from mos.model.frontend import dft_basis

        self.base = base
        window = torch.hann_window(base.win, periodic=True, dtype=torch.float64)
        self.register_buffer("dft_basis", dft_basis(window, n_fft))

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(waveform.shape[1], device=waveform.device)
        x = waveform * (idx[None, :] < lengths[:, None]).to(waveform.dtype)
        spec = nn.functional.conv1d(x.unsqueeze(1), self.dft_basis, stride=self.base.hop, padding=self.base.win // 2)
        f = self.base.n_freqs
        power = spec[:, :f] ** 2 + spec[:, f:] ** 2
        mel = torch.matmul(power.transpose(1, 2), self.base.mel_fbank).transpose(1, 2)
        return torch.log(mel + 1e-6), self.base.frame_lengths(lengths)


class CurrentLogMel(nn.Module):
    """What mos/model/frontend.py does now (LogMel.log_mel), un-normalised log-mel."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base.log_mel(waveform, lengths)


class MatmulLogMel(Framed):
    def __init__(self, base: nn.Module, n_fft: int) -> None:
        super().__init__(base)
        from mos.model.frontend import dft_basis

        window = torch.hann_window(base.win, periodic=True, dtype=torch.float64)
        self.register_buffer("basis", dft_basis(window, n_fft)[:, 0, :].t().contiguous())  # [win, 2F]

    def forward(self, waveform, lengths):
        spec = torch.matmul(self.frames(waveform, lengths), self.basis)  # [B, T, 2F]
        f = self.base.n_freqs
        power = spec[..., :f] ** 2 + spec[..., f:] ** 2
        mel = torch.matmul(power, self.base.mel_fbank).transpose(1, 2)
        return torch.log(mel + 1e-6), self.base.frame_lengths(lengths)


class FoldedLogMel(Framed):
    def __init__(self, base: nn.Module, n_fft: int) -> None:
        super().__init__(base)
        win, f = self.win, base.n_freqs
        c = win // 2
        j = torch.arange(win, dtype=torch.float64)
        window = torch.hann_window(win, periodic=True, dtype=torch.float64)
        assert torch.allclose(window[c + 1 :], window[1:c].flip(0)), "window must be symmetric about win/2"
        k = torch.arange(f, dtype=torch.float64)
        m = torch.arange(0, c, dtype=torch.float64)  # 0..c-1 (m = c pairs with window[0] = 0)
        theta = 2 * math.pi * k[None, :] * m[:, None] / n_fft  # [c, F]
        cos = window[c + m.long()][:, None] * torch.cos(theta)  # [c, F]; row 0 is the centre sample
        sin = window[c + m.long()][1:, None] * torch.sin(theta[1:])  # [c - 1, F]
        self.register_buffer("cos_basis", cos.float())
        self.register_buffer("sin_basis", sin.float())
        del j

    def forward(self, waveform, lengths):
        fr = self.frames(waveform, lengths)  # [B, T, win]
        c = self.win // 2
        centre = fr[..., c : c + 1]
        right = fr[..., c + 1 :]  # x[c+1 .. win-1]: m = 1 .. c-1
        left = torch.flip(fr[..., 1:c], dims=[2])  # x[c-1 .. 1]:  m = 1 .. c-1
        re = torch.matmul(torch.cat([centre, right + left], dim=2), self.cos_basis)
        im = torch.matmul(right - left, self.sin_basis)
        power = re * re + im * im
        mel = torch.matmul(power, self.base.mel_fbank).transpose(1, 2)
        return torch.log(mel + 1e-6), self.base.frame_lengths(lengths)



class FftLogMel(nn.Module):
    """The factorised DFT of mos.model.frontend.Spectrum with a chosen decimation `a` (LogMel
    picks one with `decimation`), the mel MatMul on its row order."""

    def __init__(self, base: nn.Module, n_fft: int, a: int) -> None:
        super().__init__()
        from mos.model.frontend import Spectrum, factorised_bases

        self.base = base
        window = torch.hann_window(base.win, periodic=True, dtype=torch.float64)
        self.spectrum = Spectrum(window, n_fft, base.hop)
        stage1, stage2, rows = factorised_bases(window, n_fft, a)
        self.spectrum.a, self.spectrum.stage1, self.spectrum.stage2, self.spectrum.rows = a, stage1, stage2, rows
        self.register_buffer("mel_rows", self.spectrum.rows_of(base.mel_fbank))

    def forward(self, waveform, lengths):
        idx = torch.arange(waveform.shape[1], device=waveform.device)
        x = waveform * (idx[None, :] < lengths[:, None]).to(waveform.dtype)
        power = self.spectrum.power(x, padding=self.base.win // 2)
        mel = torch.matmul(power.transpose(1, 2), self.mel_rows).transpose(1, 2)
        return torch.log(mel + 1e-6), self.base.frame_lengths(lengths)


def export(module: nn.Module, path: Path) -> None:
    wave = torch.randn(2, 37000) * 0.1
    lengths = torch.tensor([37000, 21000])
    torch.onnx.export(module, (wave, lengths), str(path), opset_version=17, dynamo=False,
                      input_names=["waveform", "lengths"], output_names=["logmel", "frames"],
                      dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                    "logmel": {0: "batch", 2: "frames"}, "frames": {0: "batch"}})


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as mos.runtime.session
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "frontend_variants.json")
    args = p.parse_args(argv)

    import tempfile

    import onnxruntime as ort

    from mos.bench.machine import load_average, machine_info
    from mos.model import ModelConfig
    from mos.model.frontend import LogMel, decimation

    cfg = ModelConfig()
    base = LogMel(cfg).eval()
    variants = {"conv": ConvLogMel(base, cfg.n_fft), "matmul": MatmulLogMel(base, cfg.n_fft),
                "folded": FoldedLogMel(base, cfg.n_fft), "fft10": FftLogMel(base, cfg.n_fft, 10),
                "fft16": FftLogMel(base, cfg.n_fft, 16), "fft40": FftLogMel(base, cfg.n_fft, 40),
                f"fft{decimation(cfg.n_fft, cfg.hop_length)} (LogMel)": CurrentLogMel(base)}
    rng = np.random.default_rng(0)
    # Equivalence on odd lengths in a padded batch, and against each clip alone.
    lens = [160000, 4801, 99999, 300]
    wave = torch.from_numpy((rng.standard_normal((4, max(lens))) * 0.1).astype(np.float32))
    lengths = torch.tensor(lens)
    checks = {}
    with torch.no_grad():
        ref, ref_frames = variants["conv"](wave, lengths)
        for name, mod in variants.items():
            out, frames = mod(wave, lengths)
            assert torch.equal(frames, ref_frames)
            diff = 0.0
            for i, n in enumerate(lens):
                t = int(frames[i])
                diff = max(diff, float((out[i, :, :t] - ref[i, :, :t]).abs().max()))
                alone, _ = mod(wave[i : i + 1, :n], lengths[i : i + 1])
                diff = max(diff, float((alone[0, :, :t] - ref[i, :, :t]).abs().max()))
            checks[name] = diff
    print("max |log-mel - conv log-mel| (padded batch and alone):", {k: f"{v:.2e}" for k, v in checks.items()})

    clips = [(rng.standard_normal(160000) * 0.1).astype(np.float32) for _ in range(args.clips)]
    threads = [int(t) for t in args.threads.split(",")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, mod in variants.items():
            paths[name] = Path(tmp) / f"{name}.onnx"
            with torch.no_grad(), io.StringIO():
                export(mod, paths[name])
        # ORT agrees with eager for each variant
        for name in variants:
            s = ort_session(paths[name], 2)
            o = s.run(None, {"waveform": wave.numpy(), "lengths": lengths.numpy()})[0]
            checks[f"{name} ort vs conv eager"] = float(np.max(np.abs(o[0, :, :1000] - ref[0, :, :1000].numpy())))
        for t in threads:
            sessions = {name: ort_session(paths[name], t) for name in variants}
            for bs in batch_sizes:
                feeds = [{"waveform": np.stack(clips[i : i + bs]), "lengths": np.full(len(clips[i : i + bs]), 160000, np.int64)}
                         for i in range(0, len(clips), bs)]
                rates = {name: [] for name in variants}
                for name, s in sessions.items():
                    for f in feeds:
                        s.run(None, f)
                for _ in range(args.repeats):  # interleaved
                    for name, s in sessions.items():
                        start = time.perf_counter()
                        for f in feeds:
                            s.run(None, f)
                        rates[name].append(len(clips) / (time.perf_counter() - start))
                for name, r in rates.items():
                    results.append({"variant": name, "threads": t, "batch_size": bs, "clips_per_s_median": round(statistics.median(r), 1),
                                    "min": round(min(r), 1), "max": round(max(r), 1),
                                    "ms_per_clip": round(1000 / statistics.median(r), 2)})
                    print(f"threads {t} batch {bs:>2} {name:>7}: {statistics.median(r):7.1f} clips/s "
                          f"({min(r):.1f}-{max(r):.1f}), {1000 / statistics.median(r):.2f} ms/clip", flush=True)
    report = {"what": "log-mel front end alone, 10 s clips at 16 kHz, ONNX Runtime CPU", "checks": checks,
              "results": results, "machine": machine_info(), "onnxruntime": ort.__version__,
              "load_average_end": load_average()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
