"""CLAP's audio tower (a local transformers directory with model_type "clap", e.g.
laion/clap-htsat-unfused, laion/larger_clap_music) as a pretrained audio encoder.

The encoder is what `ClapModel.get_audio_features(...).pooler_output` gives: the HTSAT audio model,
its projection and the L2 normalisation, one 512-d embedding per 10 s window (frames [B, 1, D]).
Its front end is inside the graph and matches `ClapFeatureExtractor` with truncation "rand_trunc"
(the unfused models' setting): a clip shorter than the window is padded as the extractor pads it
("repeatpad": tiled whole, then zeros; per clip, from its length), a longer one is cut to its first
window (the extractor crops at random; the runtime windows long clips so this does not happen
there), then a centred (reflect-padded) STFT with a periodic Hann window, power, slaney mel filters
(slaney norm), floor 1e-10 and 10*log10. Fused CLAP models (enable_fusion, 4-channel input) are
refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mos.errors import MosError
from mos.model.encoders.base import EncoderInfo, WindowEmbeddingEncoder, features_version
from mos.files import read_json
from mos.model.encoders.loading import PREPROCESSOR, check_weights_present, encoder_sha256, load_complete
from mos.model.frontend import Spectrum, float32_region

KIND = "clap"
# Bump when this module's front end or forward changes the features it gives (caches key on it).
FEATURES_VERSION = 1
# The LAION CLAP extractor settings (laion/clap-htsat-unfused's preprocessor_config.json), used for
# any that a directory's preprocessor_config.json does not give (or when it has none).
DEFAULT_EXTRACTOR: dict[str, Any] = {
    "sampling_rate": 48000,
    "feature_size": 64,
    "fft_window_size": 1024,
    "hop_length": 480,
    "max_length_s": 10,
    "frequency_min": 50,
    "frequency_max": 14000,
    "padding": "repeatpad",
}
PADDINGS = ("repeatpad", "repeat", "pad")
MEL_FLOOR = 1e-10  # ClapFeatureExtractor: mel power floored at 1e-10 before dB (i.e. -100 dB)


def extractor_settings(model_dir: Path) -> dict[str, Any]:
    """The feature extractor settings the in-graph front end reproduces (DEFAULT_EXTRACTOR, updated
    from the directory's preprocessor_config.json when it has one)."""
    settings = dict(DEFAULT_EXTRACTOR)
    pre = model_dir / PREPROCESSOR
    if pre.is_file():
        found = read_json(pre)
        settings.update({k: found[k] for k in DEFAULT_EXTRACTOR if found.get(k) is not None})
    if settings["padding"] not in PADDINGS:
        raise MosError(f"{pre}: padding {settings['padding']!r} is not one of {', '.join(PADDINGS)}")
    for key in ("sampling_rate", "feature_size", "fft_window_size", "hop_length", "max_length_s", "frequency_min", "frequency_max"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and key != "frequency_min"):
            raise MosError(f"{pre}: {key} {value!r} is not a positive number")
    samples = float(settings["max_length_s"]) * int(settings["sampling_rate"])
    if samples != int(samples):
        raise MosError(f"{pre}: max_length_s {settings['max_length_s']} is not a whole number of samples")
    return settings


def _audio_parameters(model_dir: Path) -> int:
    """Parameters of the audio tower and projection, from the safetensors headers (no weights read)."""
    try:
        from safetensors import safe_open
    except ImportError:
        return 0
    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key.startswith(("audio_model.", "audio_projection.")):
                    n = 1
                    for d in st.get_slice(key).get_shape():
                        n *= int(d)
                    total += n
    return total


def resolve(spec: str) -> EncoderInfo:
    """A CLAP directory -> EncoderInfo (rate and window from its extractor settings), or a one-line
    MosError (no weights, a fused model, unreadable settings)."""
    model_dir = Path(spec)
    config = read_json(model_dir / "config.json")
    check_weights_present(model_dir)
    audio = config.get("audio_config") or {}
    if audio.get("enable_fusion") or config.get("enable_fusion"):
        raise MosError(f"{spec}: a fused CLAP model (enable_fusion); only unfused CLAP is supported")
    settings = extractor_settings(model_dir)
    out_dim = int(config.get("projection_dim") or audio.get("projection_dim") or 512)
    return EncoderInfo(
        kind=KIND,
        name=f"CLAP audio tower ({model_dir.name})",
        source=str(model_dir),
        sample_rate=int(settings["sampling_rate"]),
        out_dim=out_dim,
        sha256=encoder_sha256(model_dir),
        code_version=features_version(KIND, FEATURES_VERSION),
        window_seconds=float(settings["max_length_s"]),
        padding_invariant=True,
        parameters=_audio_parameters(model_dir),
    )


class ClapFrontEnd(nn.Module):
    """waveform [B, N] + lengths [B] -> log-mel dB [B, 1, frames, n_mels], as ClapFeatureExtractor
    (truncation "rand_trunc", the given padding) computes it for each clip alone."""

    def __init__(self, settings: dict[str, Any], mel_filters: torch.Tensor) -> None:
        super().__init__()
        self.samples = int(float(settings["max_length_s"]) * int(settings["sampling_rate"]))
        self.n_fft = int(settings["fft_window_size"])
        self.hop = int(settings["hop_length"])
        self.padding = str(settings["padding"])
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64)
        self.spectrum = Spectrum(window, self.n_fft, self.hop)
        self.register_buffer("mel_rows", self.spectrum.rows_of(mel_filters.float()), persistent=False)  # [rows, n_mels]

    def fixed_length(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each clip as the extractor gives it to the STFT: [B, samples] (padded by `padding`, a
        longer clip cut to its first `samples`). Uses only each clip's first `length` samples."""
        n = torch.clamp(lengths.to(torch.int64), max=self.samples)
        n1 = torch.clamp(n, min=1)
        i = torch.arange(self.samples, device=waveform.device, dtype=torch.int64)[None, :]
        wave = torch.gather(waveform, 1, torch.remainder(i, n1[:, None]))
        if self.padding == "repeatpad":  # tiled floor(samples / n) times, zeros after
            keep = self.samples - torch.remainder(torch.full_like(n1, self.samples), n1)
        elif self.padding == "repeat":  # tiled and cut
            keep = torch.full_like(n1, self.samples)
        else:  # "pad": zeros after the clip
            keep = n
        keep = keep * (n > 0).to(torch.int64)
        return wave * (i < keep[:, None]).to(wave.dtype)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with float32_region(waveform.device.type):
            wave = self.fixed_length(waveform.float(), lengths)
            half = self.n_fft // 2
            wave = nn.functional.pad(wave.unsqueeze(1), (half, half), mode="reflect").squeeze(1)  # center=True
            power = self.spectrum.power(wave)  # [B, rows, T]
            mel = torch.matmul(power.transpose(1, 2), self.mel_rows)  # [B, T, M]
            return (10.0 * torch.log10(torch.clamp(mel, min=MEL_FLOOR))).unsqueeze(1)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """CLAP's embedding normalisation (both towers): x / max(||x||, eps) over the last dim, as torch.nn.functional.normalize, written so that the
    ONNX graph keeps the last dim's fixed size (normalize's expand_as makes it symbolic)."""
    return x / torch.clamp(torch.linalg.vector_norm(x, dim=-1, keepdim=True), min=eps)


class ClapAudioTower(nn.Module):
    """log-mel [B, 1, T, M] -> the L2-normalised projected audio embedding [B, D] (get_audio_features)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.audio_model = model.audio_model
        self.audio_projection = model.audio_projection

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        pooled = self.audio_model(input_features=mel).pooler_output
        return l2_normalize(self.audio_projection(pooled))


class ClapAudioEncoder(WindowEmbeddingEncoder):
    """CLAP's audio tower (ClapAudioTower) behind its in-graph front end (ClapFrontEnd): one
    embedding per window, frames [B, 1, D]."""


def build(info: EncoderInfo) -> ClapAudioEncoder:
    """Load the audio tower and projection of the CLAP directory (offline, no remote code)."""
    from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

    model_dir = Path(info.source)
    settings = extractor_settings(model_dir)
    extractor = ClapFeatureExtractor(
        feature_size=int(settings["feature_size"]), sampling_rate=int(settings["sampling_rate"]),
        hop_length=int(settings["hop_length"]), max_length_s=settings["max_length_s"],
        fft_window_size=int(settings["fft_window_size"]), frequency_min=settings["frequency_min"],
        frequency_max=settings["frequency_max"], truncation="rand_trunc", padding=settings["padding"],
    )
    model = load_complete(ClapAudioModelWithProjection, model_dir, "CLAP audio tower")
    if getattr(model.config, "enable_fusion", False):
        raise MosError(f"{model_dir}: a fused CLAP model (enable_fusion); only unfused CLAP is supported")
    front_end = ClapFrontEnd(settings, torch.from_numpy(extractor.mel_filters_slaney))
    return ClapAudioEncoder(info, front_end, ClapAudioTower(model))
