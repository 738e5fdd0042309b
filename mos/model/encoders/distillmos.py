"""Distill-MOS (PyPI package `distillmos` 0.9.1, MIT code and weights; Stahl and Gamper, 2025: a
speech-quality model distilled from an XLS-R MOS model) as a pretrained audio encoder:
`--audio-encoder distillmos`, and its published 1-5 head for `mos export --pretrained distillmos`.

The package needs `xls_r_sqa` and torchaudio at import time, so it is never imported here: it is
installed with `pip install --no-deps distillmos==0.9.1`, its checkpoint is found among the
installed files, read with torch.load(weights_only=True), and its network and preprocessing are
rebuilt here, inside the graph:

- 16 kHz audio; one window of 7.68 s (122880 samples): a shorter clip is zero-padded to it, a
  longer one cut to its first window (the runtime scores long clips in windows; the package
  instead averages windows whose starts are spread at most 1 s apart);
- the window divided by its largest |sample| (+ 1e-8), reflect-padded by 80 samples each side;
- a complex STFT (periodic Hann window of 320 samples = 20 ms, hop 160 = 10 ms, no centring):
  768 frames x 161 bins, magnitude compressed to |X|^0.3 with the phase kept (real, imaginary);
- six 3x3 convolutions (LeakyReLU 0.1; frequency stride 2 from the second, time stride 2 in the
  last): 256 channels x 4 bins per frame, 384 frames of 1024;
- BatchNorm twice, a projection to 200, a fixed positional encoding, seven post-norm transformer
  layers (8 heads, feed-forward 400, ReLU), BatchNorm, attention pooling: one 200-d embedding per
  window (frames [B, 1, 200]), what this encoder gives;
- the package's head on that embedding: 1 + 4 * sigmoid(linear), the MOS on a 1-5 scale.

Zero padding past a clip's length does not change its embedding: the package itself pads every
clip to the window with zeros, so a clip alone and in a padded batch see the same window.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from mos.errors import MosError, one_line
from mos.files import sha256_file
from mos.model.encoders.loading import package_version, packaged_file
from mos.model.encoders.base import EncoderInfo, WindowEmbeddingEncoder, features_version
from mos.model.frontend import dft_basis, float32_region

KIND = "distillmos"
# Bump when this module's front end or forward changes the features it gives (caches key on it).
FEATURES_VERSION = 1
VERSION = "0.9.1"
INSTALL = f"pip install --no-deps distillmos=={VERSION}"
WEIGHTS = "distill_mos_v7.pt"
SAMPLE_RATE = 16000
WINDOW = 122880  # 7.68 s
WIN, HOP = 320, 160  # 20 ms frames every 10 ms
N_FREQS = WIN // 2 + 1
COMPRESSION = 0.3
FRAMES = 384  # transformer positions (768 STFT frames halved by the last convolution)
CNN_LAYERS, CNN_CHANNELS = 6, 256
DIM, HEADS, LAYERS = 200, 8, 7
OUT_DIM = DIM
LOW, HIGH = 1.0, 5.0  # the published head's scale


def checkpoint_path() -> Path:
    """The installed package's weights, found without importing the package, or a one-line MosError."""
    return packaged_file(KIND, f"weights/{WEIGHTS}", INSTALL, "it is never imported, --no-deps keeps its dependencies out")


def resolve(spec: str) -> EncoderInfo:
    """"distillmos" -> EncoderInfo (16 kHz, a 7.68 s window, one 200-d embedding), or a one-line MosError."""
    path = checkpoint_path()
    return EncoderInfo(
        kind=KIND,
        name=f"Distill-MOS {package_version(KIND)} (PyPI), speech quality CNN + transformer",
        source=str(path),
        sample_rate=SAMPLE_RATE,
        out_dim=OUT_DIM,
        sha256=sha256_file(path),
        code_version=features_version(KIND, FEATURES_VERSION),
        window_seconds=WINDOW / SAMPLE_RATE,
        padding_invariant=True,
        parameters=sum(p.numel() for p in DistillMosNet().parameters()),
    )


class DistillMosFrontEnd(nn.Module):
    """waveform [B, N] + lengths [B] -> compressed complex spectrogram [B, 2, 161, 768] of each
    clip's first window (zero-padded to it), as the package computes it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("dft", dft_basis(torch.hann_window(WIN, periodic=True), WIN), persistent=False)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with float32_region(waveform.device.type):
            wave = waveform.float()
            valid = torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths.to(torch.int64)[:, None]
            wave = nn.functional.pad(wave * valid.to(wave.dtype), (0, WINDOW))[:, :WINDOW]
            wave = wave / (torch.amax(torch.abs(wave), dim=1, keepdim=True) + 1e-8)
            pad = (WIN - HOP) // 2
            wave = nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect")
            spec = nn.functional.conv1d(wave, self.dft, stride=HOP)  # [B, 2F, T]: real rows, then imaginary
            spec = spec.reshape(spec.shape[0], 2, N_FREQS, spec.shape[2])
            mag = torch.clamp(torch.sqrt((spec * spec).sum(1, keepdim=True)), min=1e-12)
            return spec * mag ** (COMPRESSION - 1.0)


class Cnn(nn.Module):
    """The package's _ComplexSpecCNN (its `cnn` Sequential, names kept): [B, 2, 161, T] -> [B, T/2, 1024]."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 2
        for i in range(CNN_LAYERS):
            cout = min(64 * 2 ** max(i - 1, 0), CNN_CHANNELS)
            stride = (2 if i >= 1 else 1, 2 if i == CNN_LAYERS - 1 else 1)
            layers += [nn.Conv2d(cin, cout, (3, 3), stride=stride, padding=(0, 1)), nn.LeakyReLU(0.1)]
            cin = cout
        self.cnn = nn.Sequential(*layers)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.cnn(spec), 1, -2).transpose(1, 2)


class SelfAttention(nn.Module):
    """nn.MultiheadAttention's computation (batch first, no mask), its parameter names kept."""

    def __init__(self) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * DIM, DIM))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * DIM))
        self.out_proj = nn.Linear(DIM, DIM)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(b, t, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DIM // HEADS), dim=-1)
        return self.out_proj(torch.matmul(att, v).transpose(1, 2).reshape(b, t, DIM))


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer (post-norm, ReLU, feed-forward 2 x width), parameter names kept."""

    def __init__(self) -> None:
        super().__init__()
        self.self_attn = SelfAttention()
        self.linear1, self.linear2 = nn.Linear(DIM, 2 * DIM), nn.Linear(2 * DIM, DIM)
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.linear2(torch.relu(self.linear1(x))))


class Stack(nn.Module):
    """Holds `layers` (the name nn.TransformerEncoder gives them)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer() for _ in range(LAYERS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class PositionalEncoding(nn.Module):
    """The fixed table `pe` [1, 384, 200] the checkpoint holds."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pe", torch.zeros(1, FRAMES, DIM))


class Transformer(nn.Module):
    """The package's TransformerWrapper: BatchNorm, projection to 200, positions, the layers."""

    def __init__(self, dim_input: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim_input)
        self.position_encoding = PositionalEncoding()
        self.linear_proj = nn.Linear(dim_input, DIM)
        self.transformer_encoder = Stack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear_proj(self.norm(x.transpose(1, 2)).transpose(1, 2))
        return self.transformer_encoder(x + self.position_encoding.pe)


class AttentionPool(nn.Module):
    """The package's PoolAttFF: attention weights from a small MLP; `linear3` is the quality head."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(DIM, 2 * DIM), nn.Linear(2 * DIM, 1)
        self.linear3 = nn.Linear(DIM, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = torch.softmax(self.linear2(torch.relu(self.linear1(x))), dim=1)  # [B, T, 1]
        return (att * x).sum(1)


class QualityModel(nn.Module):
    """The package's SingleLayerModel up to the pooled embedding (its head: `pool.linear3`)."""

    def __init__(self, dim_input: int) -> None:
        super().__init__()
        self.norm_input = nn.BatchNorm1d(dim_input)
        self.transformer = Transformer(dim_input)
        self.norm_trans = nn.BatchNorm1d(DIM)
        self.pool = AttentionPool()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.norm_input(feats.transpose(1, 2)).transpose(1, 2)
        x = self.norm_trans(self.transformer(x).transpose(1, 2)).transpose(1, 2)
        return self.pool(x)


class DistillMosNet(nn.Module):
    """Compressed spectrogram [B, 2, 161, 768] -> embedding [B, 200]; `mos(embedding)` the 1-5 score."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = Cnn()
        self.transformer_pool_attn = QualityModel(CNN_CHANNELS * 4)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.transformer_pool_attn(self.cnn(spec))

    def mos(self, embedding: torch.Tensor) -> torch.Tensor:
        """[B, 200] -> [B] on the published 1-5 scale."""
        return LOW + (HIGH - LOW) * torch.sigmoid(self.transformer_pool_attn.pool.linear3(embedding)[:, 0])


class DistillMosAudioEncoder(WindowEmbeddingEncoder):
    """Distill-MOS behind its in-graph front end: one 200-d embedding per 7.68 s window."""


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The network's tensors from the package's checkpoint ({"model": state_dict, "step": n})."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a one-line error
        raise MosError(f"{path}: not a readable Distill-MOS checkpoint ({one_line(exc, limit=160)}); reinstall with `{INSTALL}`") from None
    state = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise MosError(f"{path}: not a Distill-MOS checkpoint (no 'model' state dict)")
    return state


def build(info: EncoderInfo) -> DistillMosAudioEncoder:
    """The network with the checkpoint's weights (every tensor must be there)."""
    net = DistillMosNet()
    missing, unexpected = net.load_state_dict(load_weights(Path(info.source)), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise MosError(f"{info.source}: Distill-MOS weights do not fit the network "
                       f"(missing {', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})")
    return DistillMosAudioEncoder(info, DistillMosFrontEnd(), net.eval())
