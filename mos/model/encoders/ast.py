"""The Audio Spectrogram Transformer (a local transformers directory with model_type
"audio-spectrogram-transformer", e.g. MIT/ast-finetuned-audioset-10-10-0.4593) as a pretrained
audio encoder.

The encoder is what `ASTModel(**ASTFeatureExtractor(clip)).pooler_output` gives: the mean of the
CLS and distillation tokens after the final LayerNorm, `hidden_size` wide, one embedding per
window (frames [B, 1, D]). An *ForAudioClassification directory works too (its base model is used).
The front end is inside the graph and matches `ASTFeatureExtractor` (torchaudio's Kaldi fbank):
16 kHz audio as it comes (not scaled to 16-bit integers: the extractor does not scale either),
frames of 400 samples every 160 (25 ms / 10 ms, only frames that fit: snip_edges), each with its
mean removed, pre-emphasis 0.97 (the first sample against itself), a symmetric 400-point Hann
window and a 512-point DFT, power, Kaldi mel filters (num_mel_bins, 20 Hz to 8 kHz), the log of
max(energy, float32 epsilon). Frame mean, pre-emphasis, window and DFT are one linear map per
frame, applied as a strided convolution. The fbank is cut or zero-padded to `max_length` frames
per clip from its own length (frames past a clip's own frames are zeros, whatever the batch
padding), then normalised as (x - mean) / (2 * std) with the extractor's mean and std when it
says do_normalize.

The window is the audio that gives exactly `max_length` frames: (max_length - 1) * 160 + 400
samples (164080, 10.255 s, for 1024 frames); a longer clip is cut to its first window (the
runtime scores long clips in windows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mos.errors import MosError
from mos.model.encoders.base import EncoderInfo, WindowEmbeddingEncoder, features_version
from mos.files import read_json
from mos.model.encoders.loading import (PREPROCESSOR, EagerAttention, check_weights_present, encoder_sha256,
                                        load_complete)
from mos.model.frontend import dft_basis, float32_region

KIND = "ast"
# Bump when this module's front end or forward changes the features it gives (caches key on it).
FEATURES_VERSION = 1
SAMPLE_RATE = 16000
FRAME = 400  # 25 ms at 16 kHz (Kaldi frame_length)
SHIFT = 160  # 10 ms (Kaldi frame_shift)
N_FFT = 512  # the frame rounded up to a power of two (Kaldi round_to_power_of_two)
PREEMPHASIS = 0.97
LOW_FREQ = 20.0  # Kaldi fbank's default low_freq; high_freq 0 means the Nyquist frequency
EPSILON = float(torch.finfo(torch.float32).eps)  # Kaldi's floor before the log
# ASTFeatureExtractor's defaults (the AudioSet statistics), used for any setting a directory's
# preprocessor_config.json does not give; max_length and num_mel_bins default to the model's.
DEFAULT_EXTRACTOR: dict[str, Any] = {"sampling_rate": SAMPLE_RATE, "do_normalize": True,
                                     "mean": -4.2677393, "std": 4.5689974}


def _positive_int(value: Any, where: Path, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise MosError(f"{where}: {key} {value!r} is not a positive integer")
    return value


def settings(model_dir: Path) -> dict[str, Any]:
    """What the encoder needs from config.json and preprocessor_config.json, checked: hidden_size,
    max_length (frames), num_mel_bins, do_normalize, mean, std."""
    config_path = model_dir / "config.json"
    config = read_json(config_path)
    found = {"hidden_size": 768, "max_length": 1024, "num_mel_bins": 128}
    for key in found:
        found[key] = _positive_int(config.get(key, found[key]), config_path, key)
    out = {**found, **DEFAULT_EXTRACTOR}
    pre = model_dir / PREPROCESSOR
    if pre.is_file():
        extractor = read_json(pre)
        out.update({k: extractor[k] for k in DEFAULT_EXTRACTOR if extractor.get(k) is not None})
        for key in ("max_length", "num_mel_bins"):
            value = _positive_int(extractor.get(key, found[key]), pre, key)
            if value != found[key]:
                raise MosError(f"{pre}: {key} {value} differs from the model's {found[key]} (config.json)")
    if out["sampling_rate"] != SAMPLE_RATE:
        raise MosError(f"{pre}: sampling_rate {out['sampling_rate']!r}; AST takes {SAMPLE_RATE} Hz audio")
    for key in ("mean", "std"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (key == "std" and value <= 0):
            raise MosError(f"{pre}: {key} {value!r} is not a {'positive ' if key == 'std' else ''}number")
    if out["num_mel_bins"] <= 3:
        raise MosError(f"{config_path}: num_mel_bins {out['num_mel_bins']} is too few (Kaldi fbank needs 4 or more)")
    out["do_normalize"] = bool(out["do_normalize"])
    return out


def window_samples(max_length: int) -> int:
    """The samples that give exactly `max_length` fbank frames."""
    return (max_length - 1) * SHIFT + FRAME


def resolve(spec: str) -> EncoderInfo:
    """An AST directory -> EncoderInfo (16 kHz, a window of max_length frames, hidden_size wide,
    padding invariant), or a one-line MosError (no weights, unreadable or inconsistent settings)."""
    model_dir = Path(spec)
    s = settings(model_dir)
    check_weights_present(model_dir)
    return EncoderInfo(
        kind=KIND,
        name=f"AST ({model_dir.name}, {s['max_length']} frames of {s['num_mel_bins']} mels)",
        source=str(model_dir),
        sample_rate=SAMPLE_RATE,
        out_dim=s["hidden_size"],
        sha256=encoder_sha256(model_dir),
        code_version=features_version(KIND, FEATURES_VERSION),
        window_seconds=window_samples(s["max_length"]) / SAMPLE_RATE,
        padding_invariant=True,
        parameters=0,
    )


def frame_basis() -> torch.Tensor:
    """Conv1d weights [2 * 257, 1, 400]: per frame, remove its mean, pre-emphasise, apply the
    symmetric Hann window and take the 512-point DFT (real and imaginary rows), as one linear map."""
    eye = torch.eye(FRAME, dtype=torch.float64)
    remove_dc = eye - 1.0 / FRAME
    preemphasis = eye - PREEMPHASIS * torch.diag(torch.ones(FRAME - 1, dtype=torch.float64), -1)
    preemphasis[0, 0] = 1.0 - PREEMPHASIS  # x[0] - 0.97 * x[0] (Kaldi replicates the first sample)
    window = torch.hann_window(FRAME, periodic=False, dtype=torch.float64)
    dft = dft_basis(window, N_FFT).squeeze(1).double()  # [2F, 400], window included
    return (dft @ preemphasis @ remove_dc).float().unsqueeze(1)


class AstFrontEnd(nn.Module):
    """waveform [B, N] + lengths [B] -> normalised fbank [B, max_length, n_mels], as
    ASTFeatureExtractor computes it for each clip alone."""

    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        from torchaudio.compliance.kaldi import get_mel_banks

        self.max_length = int(s["max_length"])
        self.samples = window_samples(self.max_length)
        self.do_normalize = bool(s["do_normalize"])
        self.mean, self.std = float(s["mean"]), float(s["std"])
        banks, _ = get_mel_banks(int(s["num_mel_bins"]), N_FFT, float(SAMPLE_RATE), LOW_FREQ, 0.0, 100.0, -500.0, 1.0)
        banks = nn.functional.pad(banks.float(), (0, 1))  # no weight on the Nyquist bin, as Kaldi
        self.register_buffer("frame_basis", frame_basis(), persistent=False)
        self.register_buffer("mel_fbank", banks.t().contiguous(), persistent=False)  # [F, n_mels]

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """fbank frames of each clip (frames that fit whole), at most max_length."""
        frames = torch.div(lengths.to(torch.int64) - FRAME, SHIFT, rounding_mode="floor") + 1
        return torch.clamp(frames, min=0, max=self.max_length)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with float32_region(waveform.device.type):
            wave = nn.functional.pad(waveform.float(), (0, self.samples))[:, : self.samples]  # one window
            spec = nn.functional.conv1d(wave.unsqueeze(1), self.frame_basis, stride=SHIFT)  # [B, 2F, max_length]
            n_freqs = spec.shape[1] // 2
            power = spec[:, :n_freqs] ** 2 + spec[:, n_freqs:] ** 2
            mel = torch.matmul(power.transpose(1, 2), self.mel_fbank)  # [B, T, M]
            fbank = torch.log(torch.clamp(mel, min=EPSILON))
            valid = torch.arange(self.max_length, device=wave.device)[None, :] < self.frame_lengths(lengths)[:, None]
            fbank = fbank * valid[:, :, None].to(fbank.dtype)  # the extractor's zero padding, per clip
            if self.do_normalize:
                fbank = (fbank - self.mean) / (2.0 * self.std)
            return fbank


class AstAudioEncoder(WindowEmbeddingEncoder):
    """ASTModel behind its in-graph front end (AstFrontEnd): one pooled embedding per window, frames [B, 1, D]."""

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_values=features).pooler_output


def build(info: EncoderInfo) -> AstAudioEncoder:
    """Load the ASTModel of the directory (offline, no remote code, eager attention); a directory
    whose weights lack any of its tensors is refused."""
    from transformers import ASTModel

    model_dir = Path(info.source)
    s = settings(model_dir)
    backbone = load_complete(EagerAttention(ASTModel), model_dir, "AST model")
    return AstAudioEncoder(info, AstFrontEnd(s), backbone)
