"""The aisfx sound-effects CNN (PyPI package `aisfx` 0.1.2, weights CC-BY-4.0, trained across
sound-effects libraries; Ma et al., ISMIR 2021) as a pretrained audio encoder: `--audio-encoder aisfx`.

The package pins numpy 1.23 and librosa 0.9.2, which would break this environment, so it is never
imported: it is installed with `pip install --no-deps aisfx==0.1.2`, its checkpoint is found among
the installed files, read with torch.load(weights_only=True), and its network and preprocessing are
rebuilt here, inside the graph:

- each clip peak-normalised (divided by its largest |sample|), 44.1 kHz;
- a centred STFT (periodic Hann window of 2048, hop 1024, zeros outside the clip), power;
- 96 HTK mel bands over 0-22050 Hz, each filter summing to 1 (librosa `htk=True, norm=1`);
- log10(1e4 * mel + 1), min-max scaled with the paper's values (0 and 9.457798957824707);
- blocks of 100 frames (~2.3 s) every 50 frames; a clip shorter than one block is zero-padded to
  one, a partial last block is dropped (the package's defaults);
- the embedding network (four conv blocks, 64 to 512 channels, BatchNorm, 2x2 max pooling; mean
  over frequency, max over time): one 512-d embedding per block, frames [B, blocks, 512].

The package's own librosa path hands the network its spectrogram transposed (mel bins as time);
this module follows the paper's layout (time x mel), which its essentia path also uses.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchaudio
from torch import nn

from mos.files import sha256_file
from mos.errors import MosError, one_line
from mos.model.encoders.loading import package_version, packaged_file
from mos.model.encoders.base import EncoderInfo, PretrainedAudioEncoder, features_version
from mos.model.encoders.pickle_compat import load_weights_only, numpy_scalar_globals
from mos.model.frontend import Spectrum, float32_region

KIND = "aisfx"
# Bump when this module's front end or forward changes the features it gives (caches key on it).
FEATURES_VERSION = 1
VERSION = "0.1.2"
INSTALL = f"pip install --no-deps aisfx=={VERSION}"
SAMPLE_RATE = 44100
N_FFT, HOP = 2048, 1024
N_MELS, F_MIN, F_MAX = 96, 0.0, 22050.0
SPEC_MAX = 9.457798957824707  # the paper's min-max normalisation (min 0)
BLOCK, BLOCK_HOP = 100, 50  # frames per embedding block and between blocks
OUT_DIM = 512
WIDTH = 64  # channels of the first conv block (then 128, 256, 512)


def checkpoint_path() -> Path:
    """The installed package's checkpoint, found without importing the package, or a one-line MosError."""
    return packaged_file(KIND, "models/checkpoint.pth", INSTALL, "--no-deps keeps its old numpy/librosa pins out")


def resolve(spec: str) -> EncoderInfo:
    """"aisfx" -> EncoderInfo (44.1 kHz, any length, 512-d per block), or a one-line MosError."""
    path = checkpoint_path()
    version = package_version(KIND)
    return EncoderInfo(
        kind=KIND,
        name=f"aisfx {version} (PyPI), sound-effects CNN",
        source=str(path),
        sample_rate=SAMPLE_RATE,
        out_dim=OUT_DIM,
        sha256=sha256_file(path),
        code_version=features_version(KIND, FEATURES_VERSION),
        window_seconds=None,
        padding_invariant=True,
        parameters=sum(p.numel() for p in EmbeddingNet().parameters()),
    )


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU, then max pooling (the package's ConvBlock, names kept)."""

    def __init__(self, cin: int, cout: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return nn.functional.max_pool2d(x, kernel_size=self.pool)


class EmbeddingNet(nn.Module):
    """blocks [N, 100, 96] (time x mel) -> embeddings [N, 512]: the package's EmbeddingNet ('max' pooling)."""

    def __init__(self) -> None:
        super().__init__()
        w = WIDTH
        self.conv_block1 = ConvBlock(1, w, (2, 2))
        self.conv_block2 = ConvBlock(w, 2 * w, (2, 2))
        self.conv_block3 = ConvBlock(2 * w, 4 * w, (2, 2))
        self.conv_block4 = ConvBlock(4 * w, 8 * w, (1, 1))

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        x = blocks.unsqueeze(1)
        x = self.conv_block4(self.conv_block3(self.conv_block2(self.conv_block1(x))))
        return torch.amax(torch.mean(x, dim=3), dim=2)


def mel_filters() -> torch.Tensor:
    """[1025, 96] HTK mel filters over 0-22050 Hz, each summing to 1 over frequency (librosa norm=1)."""
    fbank = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SAMPLE_RATE,
                                                  norm=None, mel_scale="htk").to(torch.float64)
    return fbank / fbank.sum(dim=0, keepdim=True)


def block_counts(frames: torch.Tensor) -> torch.Tensor:
    """Blocks a clip of `frames` spectrogram frames gives: whole blocks only, at least one."""
    return torch.clamp(torch.div(frames - BLOCK, BLOCK_HOP, rounding_mode="floor") + 1, min=1)


class AisfxFrontEnd(nn.Module):
    """waveform [B, N] + lengths [B] -> normalised log-mel blocks [B, blocks, 100, 96] + block counts [B]."""

    def __init__(self) -> None:
        super().__init__()
        window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
        self.spectrum = Spectrum(window, N_FFT, HOP)
        self.register_buffer("mel_rows", self.spectrum.rows_of(mel_filters().float()), persistent=False)  # [rows, n_mels]
        idx = torch.arange(BLOCK, dtype=torch.int64)
        self.register_buffer("block_offsets", idx, persistent=False)

    def spectrogram(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, 96] normalised log-mel (zero past each clip's frames) and frame counts [B]."""
        lengths = lengths.to(torch.int64)
        valid = (torch.arange(waveform.shape[1], device=waveform.device)[None, :] < lengths[:, None]).to(waveform.dtype)
        wave = waveform * valid
        peak = torch.amax(torch.abs(wave), dim=1, keepdim=True)
        wave = wave / torch.where(peak > 0, peak, torch.ones_like(peak))
        power = self.spectrum.power(wave, padding=N_FFT // 2)  # [B, rows, T]
        mel = torch.matmul(power.transpose(1, 2), self.mel_rows)  # [B, T, M]
        spec = torch.log10(mel * 1e4 + 1.0) / SPEC_MAX
        frames = torch.div(lengths, HOP, rounding_mode="floor") + 1
        keep = torch.arange(spec.shape[1], device=spec.device)[None, :] < frames[:, None]
        return spec * keep[:, :, None].to(spec.dtype), frames

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with float32_region(waveform.device.type):
            spec, frames = self.spectrogram(waveform.float(), lengths)
            counts = block_counts(frames)
            # One block of zeros after the frames, as the package pads, so a short clip fills one block.
            spec = nn.functional.pad(spec, (0, 0, 0, BLOCK))
            starts = torch.arange(torch.max(counts), device=spec.device, dtype=torch.int64) * BLOCK_HOP
            index = starts[:, None] + self.block_offsets[None, :]  # [blocks, 100]
            return spec[:, index], counts


class AisfxAudioEncoder(PretrainedAudioEncoder):
    """aisfx's embedding network behind its in-graph front end: one 512-d frame per block."""

    def __init__(self, info: EncoderInfo, backbone: EmbeddingNet) -> None:
        super().__init__()
        self.info = info
        self.front_end = AisfxFrontEnd()
        self.backbone = backbone

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        blocks, counts = self.front_end(waveform, lengths)
        b, n = blocks.shape[0], blocks.shape[1]
        with float32_region(waveform.device.type):
            emb = self.backbone(blocks.reshape(b * n, BLOCK, N_MELS)).reshape(b, n, OUT_DIM)
        keep = torch.arange(n, device=emb.device)[None, :] < counts[:, None]
        return emb * keep[:, :, None].to(emb.dtype), counts


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The embedding network's tensors from the package's checkpoint (a (state_dict, datasets)
    pair whose dataset table holds numpy integers), read with weights_only=True."""
    try:
        loaded = load_weights_only(path, numpy_scalar_globals())
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a one-line error
        raise MosError(f"{path}: not a readable aisfx checkpoint ({one_line(exc, limit=160)}); reinstall with `{INSTALL}`") from None
    state = loaded[0] if isinstance(loaded, (tuple, list)) else loaded
    prefix = "embedding_net."
    if not isinstance(state, dict) or not any(str(k).startswith(prefix) for k in state):
        raise MosError(f"{path}: not an aisfx checkpoint (no {prefix}* weights)")
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def build(info: EncoderInfo) -> AisfxAudioEncoder:
    """The network with the checkpoint's weights (every tensor must be there)."""
    net = EmbeddingNet()
    weights = load_weights(Path(info.source))
    missing, unexpected = net.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise MosError(f"{info.source}: aisfx weights do not fit the network "
                       f"(missing {', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})")
    return AisfxAudioEncoder(info, net.eval())
