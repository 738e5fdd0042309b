"""In-graph log-mel front end: a real DFT as a strided Conv1d (fast in ONNX Runtime, opset-17
exportable, no complex STFT), zero padding only, frame counts tracked from sample lengths.
It always computes in float32, also under mixed-precision autocast in training, as every
exported variant does."""

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
        j = torch.arange(cfg.win_length, dtype=torch.float64)
        k = torch.arange(n_freqs, dtype=torch.float64)
        window = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64)
        angle = 2.0 * math.pi * k[:, None] * j[None, :] / cfg.n_fft
        basis = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)], dim=0)
        self.register_buffer("dft_basis", basis.float().unsqueeze(1), persistent=False)
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
            spec = nn.functional.conv1d(waveform.unsqueeze(1), self.dft_basis, stride=self.hop, padding=self.win // 2)
            re = spec[:, : self.n_freqs]
            im = spec[:, self.n_freqs :]
            power = re * re + im * im  # [B, F, T]
            mel = torch.matmul(power.transpose(1, 2), self.mel_fbank).transpose(1, 2)  # [B, M, T]
            frames = self.frame_lengths(lengths)
            return torch.log(mel + 1e-6), frames

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with float32_region(waveform.device.type):
            feats, frames = self.log_mel(waveform, lengths)
            feats = (feats - self.feat_mean) / self.feat_std
            mask = torch.arange(feats.shape[2], device=feats.device)[None, :] < frames[:, None]
            return feats * mask[:, None, :].to(feats.dtype), frames
