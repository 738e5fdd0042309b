"""In-graph log-mel front end: a real DFT as a strided Conv1d (fast in ONNX Runtime, opset-17
exportable, no complex STFT), zero padding only, frame counts tracked from sample lengths.
It always computes in float32, also under mixed-precision autocast in training, as every
exported variant does. `dft_basis` and `power_spectrogram` are shared with the pretrained
encoders' front ends (mos.model.encoders)."""

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


def power_spectrogram(waveform: torch.Tensor, basis: torch.Tensor, hop: int, padding: int = 0) -> torch.Tensor:
    """waveform [B, N] -> power spectrum [B, F, T] of frames every `hop` samples (zero `padding` each side)."""
    spec = nn.functional.conv1d(waveform.unsqueeze(1), basis, stride=hop, padding=padding)
    n_freqs = basis.shape[0] // 2
    re = spec[:, :n_freqs]
    im = spec[:, n_freqs:]
    return re * re + im * im


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
        self.register_buffer("dft_basis", dft_basis(window, cfg.n_fft), persistent=False)
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs, 0.0, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("mel_fbank", fbank.float(), persistent=False)
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
            power = power_spectrogram(waveform, self.dft_basis, self.hop, padding=self.win // 2)  # [B, F, T]
            mel = torch.matmul(power.transpose(1, 2), self.mel_fbank).transpose(1, 2)  # [B, M, T]
            frames = self.frame_lengths(lengths)
            return torch.log(mel + 1e-6), frames

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with float32_region(waveform.device.type):
            feats, frames = self.log_mel(waveform, lengths)
            feats = (feats - self.feat_mean) / self.feat_std
            mask = torch.arange(feats.shape[2], device=feats.device)[None, :] < frames[:, None]
            return feats * mask[:, None, :].to(feats.dtype), frames
