"""In-graph log-mel front end: the power spectrum of windowed frames as a two-stage (Cooley-Tukey)
real DFT: a grouped strided Conv1d straight on the waveform, then one batched MatMul (fast in ONNX
Runtime, opset-17 exportable, no complex STFT); zero padding only, frame counts tracked from
sample lengths. It always computes in float32, also under mixed-precision autocast in training,
as every exported variant does. `Spectrum` and `dft_basis` are shared with the pretrained
encoders' front ends (mos.model.encoders): a change to what they compute changes those encoders'
features, so it raises FEATURES_VERSION of each family that uses them (aisfx, ast, clap, distillmos)."""

from __future__ import annotations

import contextlib
import math

import torch
import torchaudio
from torch import nn

from mos.model.config import ModelConfig


def float32_region(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off when it is on (training with --amp); a no-op otherwise, so export
    traces see no autocast at all."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def dft_basis(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Conv1d weights [2F, 1, len(window)] (F = n_fft // 2 + 1): the windowed real and imaginary
    DFT rows, computed in float64 and stored float32. A window shorter than n_fft is the
    zero-padded DFT of the frame (the padded taps are left out, they are zero)."""
    n_freqs = n_fft // 2 + 1
    j = torch.arange(window.shape[0], dtype=torch.float64)
    k = torch.arange(n_freqs, dtype=torch.float64)
    angle = 2.0 * math.pi * k[:, None] * j[None, :] / n_fft
    w = window.to(torch.float64)
    return torch.cat([w * torch.cos(angle), -w * torch.sin(angle)], dim=0).float().unsqueeze(1)


def decimation(n_fft: int, hop: int) -> int | None:
    """The stage-1 decimation `a` of the factorised DFT (n_fft = a * c): the divisor of
    gcd(n_fft, hop) nearest sqrt(n_fft) with a, c >= 4; None when there is none (e.g. n_fft
    prime, or n_fft and hop sharing no such factor): then the spectrum is one direct DFT Conv1d."""
    g = math.gcd(n_fft, hop)
    options = [a for a in range(4, g + 1) if g % a == 0 and n_fft // a >= 4]
    return min(options, key=lambda a: (abs(a - math.sqrt(n_fft)), a)) if options else None


def factorised_bases(window: torch.Tensor, n_fft: int, a: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The windowed real DFT of an n_fft frame as two stages, n = n1 + a*n2 (n1 < a, n2 < c = n_fft/a).

    Stage 1, Conv1d weight [a*G*2, 1, c] (G = c//2 + 1) for a grouped conv over the waveform
    viewed as [B, a, N/a]: per n1 the c-point DFT of the windowed decimated sequence
    w[n1 + a*n2] x[n1 + a*n2], bins j = 0..c/2 only (real input: bin c - j is the conjugate of
    bin j), real and imaginary part. Stage 2, MatMul weight [G, 2R, 2a] (R = 2 * K1, K1 =
    (n_fft//2)//c + 1): per j the a-point sum with the twiddles, giving bins k = j + c*k1 and
    k = (c - j) + c*k1: R real parts, then R imaginary parts. Rows index [G*R]: the bin k of each
    stage-2 output row (real and imaginary part share it), -1 where the row is unused (zero)."""
    c = n_fft // a
    groups, k1s = c // 2 + 1, (n_fft // 2) // c + 1
    w = torch.zeros(n_fft, dtype=torch.float64)
    w[: window.shape[0]] = window.to(torch.float64)
    wd = w.view(c, a).t()  # [a, c]: w[n1 + a*n2]
    n2 = torch.arange(c, dtype=torch.float64)
    angle1 = 2.0 * math.pi * torch.arange(groups, dtype=torch.float64)[:, None] * n2[None, :] / c  # [G, c]
    stage1 = torch.stack([wd[:, None, :] * torch.cos(angle1), -wd[:, None, :] * torch.sin(angle1)], dim=2)  # [a, G, 2, c]
    n1 = torch.arange(a, dtype=torch.float64)
    stage2 = torch.zeros(groups, 2, 2, k1s, 2, a, dtype=torch.float64)  # [j, re/im out, conj, k1, re/im in, n1]
    rows = torch.full((groups, 2, k1s), -1, dtype=torch.int64)
    for j in range(groups):
        for conj in (0, 1):
            if conj and (j == 0 or 2 * j == c):  # bins 0 and c/2 of a real sequence have no partner
                continue
            sign = -1.0 if conj else 1.0
            for k1 in range(k1s):
                k = (c - j if conj else j) + c * k1
                if k > n_fft // 2:
                    continue
                rows[j, conj, k1] = k
                cos, sin = torch.cos(2.0 * math.pi * k * n1 / n_fft), torch.sin(2.0 * math.pi * k * n1 / n_fft)
                # X_k = sum_n1 (cos - i sin)(Yr + i sign Yi), Y the stage-1 output (conjugated for conj)
                stage2[j, 0, conj, k1, 0], stage2[j, 0, conj, k1, 1] = cos, sign * sin
                stage2[j, 1, conj, k1, 0], stage2[j, 1, conj, k1, 1] = -sin, sign * cos
    return (stage1.reshape(a * groups * 2, 1, c).float(), stage2.reshape(groups, 4 * k1s, 2 * a).float(),
            rows.reshape(-1))


def squared_magnitude(parts: torch.Tensor) -> torch.Tensor:
    """[..., 2, X, T] real and imaginary parts -> [..., X, T] re^2 + im^2, as one Mul and one
    ReduceSum in ONNX (slicing re and im apart costs a Split copy, two Muls and an Add, which take
    longer: docs/onnx-notes.md)."""
    return (parts * parts).sum(-3)


class Spectrum(nn.Module):
    """waveform [B, N] -> power spectrum of frames every `hop` samples (frame i = the padded
    waveform's samples [i*hop, i*hop + len(window)), zero-padded to n_fft), zero `padding` each
    side: (N + 2 padding - len(window)) // hop + 1 frames, as a Conv1d with the window as kernel. Factorised (see `factorised_bases`) when `decimation` finds a factor, else one DFT
    Conv1d. `power` gives the bins in the factorisation's row order (`rows`); `rows_of` maps a
    [F, M] matrix (a mel filterbank) onto that order, so the mel MatMul needs no reordering.
    No persistent state: checkpoints hold none of it."""

    def __init__(self, window: torch.Tensor, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, window.shape[0]
        self.n_freqs = n_fft // 2 + 1
        a = decimation(n_fft, hop) if window.shape[0] <= n_fft else None
        self.a = a or 0
        if a is None:
            self.register_buffer("dft_basis", dft_basis(window, n_fft), persistent=False)
            rows = torch.arange(self.n_freqs)
        else:
            stage1, stage2, rows = factorised_bases(window, n_fft, a)
            self.register_buffer("stage1", stage1, persistent=False)
            self.register_buffer("stage2", stage2, persistent=False)
        self.register_buffer("rows", rows, persistent=False)

    def rows_of(self, matrix: torch.Tensor) -> torch.Tensor:
        """[F, M] per bin -> [rows, M] per row of `power` (zero for unused rows)."""
        out = matrix.new_zeros(self.rows.shape[0], matrix.shape[1])
        used = self.rows >= 0
        out[used] = matrix[self.rows[used]]
        return out

    def power(self, waveform: torch.Tensor, padding: int = 0) -> torch.Tensor:
        """[B, rows, T] power, row r holding bin `self.rows[r]` (unused rows, -1, are zero)."""
        if not self.a:
            spec = nn.functional.conv1d(waveform.unsqueeze(1), self.dft_basis, stride=self.hop, padding=padding)
            return squared_magnitude(spec.unflatten(1, (2, self.n_freqs)))
        b, n = waveform.shape
        frames = torch.div(n + 2 * padding - self.win, self.hop, rounding_mode="floor") + 1
        total = (frames - 1) * self.hop + self.n_fft  # a multiple of a; the taps past the window are zero
        x = nn.functional.pad(waveform, (padding, padding + self.n_fft - self.win))[:, :total]
        # x[:, i*hop + n1 + a*n2] = x.view(b, -1, a)[:, i*hop/a + n2, n1]: no framing needed
        y = nn.functional.conv1d(x.reshape(b, -1, self.a).transpose(1, 2), self.stage1,
                                 stride=self.hop // self.a, groups=self.a)  # [B, a*G*2, T]
        # shapes after the conv come from its output only (-1), not from the waveform, so the ONNX
        # graph's front end (mos.export.graph.front_end) ends at the next Conv
        groups, t = self.stage2.shape[0], y.shape[2]
        y = y.reshape(-1, self.a, 2 * groups, t).transpose(1, 2).reshape(-1, groups, 2 * self.a, t)
        z = torch.matmul(self.stage2, y)  # [B, G, 2R, T]: per group R real parts, then R imaginary parts
        return squared_magnitude(z.reshape(-1, groups, 2, self.stage2.shape[1] // 2, t)).flatten(1, 2)


class LogMel(nn.Module):
    """waveform [B, N] + lengths [B] -> normalised log-mel [B, n_mels, T] + frame lengths [B].

    Frame i covers samples [i*hop - win/2, i*hop + win/2); samples outside [0, length) count as
    zeros, so a clip gives the same frames alone or zero-padded in a batch.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.hop = cfg.hop_length
        self.win = cfg.win_length
        n_freqs = cfg.n_fft // 2 + 1
        self.n_freqs = n_freqs
        window = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64)
        self.spectrum = Spectrum(window, cfg.n_fft, cfg.hop_length)
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs, 0.0, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("mel_fbank", fbank.float(), persistent=False)
        # the filterbank on the spectrum's row order: the mel MatMul reads the power as it comes
        self.register_buffer("mel_rows", self.spectrum.rows_of(fbank.float()), persistent=False)
        # Per-mel-bin statistics of the training set (set by the trainer; saved in checkpoints).
        self.register_buffer("feat_mean", torch.zeros(cfg.n_mels, 1))
        self.register_buffer("feat_std", torch.ones(cfg.n_mels, 1))

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.hop, rounding_mode="floor") + 1

    def log_mel(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised log-mel [B, n_mels, T] float32 and frame lengths (padded frames are zero)."""
        with float32_region(waveform.device.type):
            if waveform.dtype != torch.float32:
                waveform = waveform.float()
            idx = torch.arange(waveform.shape[1], device=waveform.device)
            waveform = waveform * (idx[None, :] < lengths[:, None]).to(waveform.dtype)
            power = self.spectrum.power(waveform, padding=self.win // 2)  # [B, rows, T]
            # [B*T, rows] x [rows, M]: each frame's sums do not depend on the batch (padding invariance)
            mel = torch.matmul(power.transpose(1, 2), self.mel_rows).transpose(1, 2)  # [B, M, T]
            frames = self.frame_lengths(lengths)
            return torch.log(mel + 1e-6), frames

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with float32_region(waveform.device.type):
            feats, frames = self.log_mel(waveform, lengths)
            feats = (feats - self.feat_mean) / self.feat_std
            mask = torch.arange(feats.shape[2], device=feats.device)[None, :] < frames[:, None]
            return feats * mask[:, None, :].to(feats.dtype), frames
