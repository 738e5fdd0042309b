"""Self-supervised speech models (a local transformers directory with model_type "wav2vec2",
"hubert", "wavlm" or "data2vec-audio", e.g. microsoft/wavlm-base-plus, facebook/wav2vec2-base,
facebook/hubert-base-ls960, facebook/data2vec-audio-base) as a pretrained audio encoder.

Raw 16 kHz waveform in. When the directory's preprocessor_config.json says do_normalize, each
clip is normalised to zero mean and unit variance over its own samples inside the module, as
Wav2Vec2FeatureExtractor does ((x - mean) / sqrt(var + 1e-7), zeros after the clip).
`features` gives every hidden state of the transformer stacked, [B, T, L, D] with L =
num_hidden_layers + 1 (the first is the CNN features after projection and positional
convolution); `mix` is the learned softmax-weighted sum over the L layers (as SSL-MOS and UTMOS
use them), weights initialised equal, under `mixer` so it trains with a frozen backbone.

Models whose convolutional feature extractor normalises with LayerNorm (feat_extract_norm
"layer": large models, data2vec-audio) take an attention mask; wav2vec2, HuBERT and WavLM ones give
a clip the same frames alone or zero-padded in a batch. data2vec-audio does not: its positional
embedding is a stack of convolutions with LayerNorm, and what the first makes of the zeroed padding
reaches the last frames of the clip through the next. Models with GroupNorm over time in the first
layer ("group": wav2vec2-base, HuBERT base, WavLM base/base+) were trained without masks and
normalise over the padding too. Those two are not padding invariant (callers batch clips of equal
length only, which gives each clip its own frames).
Fine-tuning keeps every layer (the model's LayerDrop is turned off; its SpecAugment-style
masking, when its config has it, stays on in training as in transformers' own fine-tuning).
A *ForCTC / *ForSequenceClassification directory works too: its base model's weights are used
(and must all be there); the heads are ignored. Attention runs in eager mode (what the
TorchScript exporter traces faithfully).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mos.errors import MosError
from mos.model.encoders.base import EncoderInfo, PretrainedAudioEncoder, features_version
from mos.files import read_json
from mos.model.encoders.loading import (PREPROCESSOR, EagerAttention, check_weights_present, encoder_sha256,
                                        load_complete)
from mos.model.frontend import float32_region

NAMES = {"wav2vec2": "wav2vec2", "hubert": "HuBERT", "wavlm": "WavLM", "data2vec-audio": "data2vec-audio"}
KINDS = tuple(NAMES)
# Bump when this module's front end or forward changes the features it gives (caches key on it).
FEATURES_VERSION = 1
SAMPLE_RATE = 16000
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm: sqrt(var + 1e-7)


def _settings(model_dir: Path) -> dict[str, Any]:
    """What the encoder needs from config.json and preprocessor_config.json, checked."""
    config = read_json(model_dir / "config.json")
    kind = str(config.get("model_type"))
    if kind not in NAMES:
        raise MosError(f"{model_dir}: model_type {kind!r} is not one of {', '.join(KINDS)}")
    if config.get("add_adapter"):
        raise MosError(f"{model_dir}: a {NAMES[kind]} model with an adapter (add_adapter) is not supported")
    # data2vec-audio's feature extractor always uses LayerNorm (its config has no feat_extract_norm).
    norm = "layer" if kind == "data2vec-audio" else str(config.get("feat_extract_norm", "group"))
    if norm not in ("group", "layer"):
        raise MosError(f"{model_dir / 'config.json'}: feat_extract_norm {norm!r} is not 'group' or 'layer'")
    settings = {"kind": kind, "norm": norm, "do_normalize": False}
    for key, default in (("hidden_size", 768), ("num_hidden_layers", 12)):
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise MosError(f"{model_dir / 'config.json'}: {key} {value!r} is not a positive integer")
        settings[key] = value
    pre = model_dir / PREPROCESSOR
    if pre.is_file():
        found = read_json(pre)
        rate = found.get("sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise MosError(f"{pre}: sampling_rate {rate!r}; these models take {SAMPLE_RATE} Hz audio")
        settings["do_normalize"] = bool(found.get("do_normalize", False))
    return settings


def resolve(spec: str) -> EncoderInfo:
    """A wav2vec2 / HuBERT / WavLM / data2vec-audio directory -> EncoderInfo (16 kHz, any length,
    hidden_size wide; padding invariant as the module docstring says), or a one-line
    MosError (no weights, unreadable or unsupported config)."""
    model_dir = Path(spec)
    settings = _settings(model_dir)
    check_weights_present(model_dir)
    norm = "layer-norm" if settings["norm"] == "layer" else "group-norm"
    return EncoderInfo(
        kind=settings["kind"],
        name=f"{NAMES[settings['kind']]} ({model_dir.name}, {settings['num_hidden_layers']} layers, {norm} CNN)",
        source=str(model_dir),
        sample_rate=SAMPLE_RATE,
        out_dim=int(settings["hidden_size"]),
        sha256=encoder_sha256(model_dir),
        code_version=features_version("ssl", FEATURES_VERSION),
        window_seconds=None,
        padding_invariant=settings["norm"] == "layer" and settings["kind"] != "data2vec-audio",
        parameters=0,
    )


def normalize_per_clip(waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each clip to zero mean and unit variance over its first `length` samples, zeros after
    (Wav2Vec2FeatureExtractor with do_normalize: population variance, + 1e-7 under the root)."""
    valid = (torch.arange(waveform.shape[1], device=waveform.device)[None, :] < lengths[:, None]).to(waveform.dtype)
    n = torch.clamp(lengths, min=1).to(waveform.dtype)[:, None]
    mean = (waveform * valid).sum(dim=1, keepdim=True) / n
    var = (((waveform - mean) * valid) ** 2).sum(dim=1, keepdim=True) / n
    return (waveform - mean) / torch.sqrt(var + NORM_EPS) * valid


class LayerWeights(nn.Module):
    """feats [B, T, L, D] -> their softmax(weights)-weighted sum over L, [B, T, D]; equal at first."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(layers))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        # A multiply and sum, not matmul(feats.transpose(-1, -2), w): the TorchScript exporter's
        # graph for that matmul disagreed with PyTorch in onnxruntime (docs/onnx-notes.md).
        return (feats * torch.softmax(self.weights, dim=0)[:, None]).sum(dim=2)


class SslAudioEncoder(PretrainedAudioEncoder):
    """A wav2vec2-family model: all hidden states as features, a learned layer weighting as mix."""

    def __init__(self, info: EncoderInfo, backbone: nn.Module, do_normalize: bool, use_mask: bool) -> None:
        super().__init__()
        self.info = info
        self.backbone = backbone
        self.do_normalize = do_normalize
        self.use_mask = use_mask
        self.layers = int(backbone.config.num_hidden_layers) + 1
        self.mixer = LayerWeights(self.layers)
        # The fewest samples that make one frame (400, 25 ms, for the usual 7-layer CNN).
        self.min_samples = 1
        for kernel, stride in reversed(list(zip(backbone.config.conv_kernel, backbone.config.conv_stride))):
            self.min_samples = (self.min_samples - 1) * int(stride) + int(kernel)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames the convolutional feature extractor gives for `lengths` samples (0 when too short)."""
        frames = self.backbone._get_feat_extract_output_lengths(lengths.to(torch.int64))
        return torch.clamp(frames.to(torch.int64), min=0)

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(torch.int64)
        if not torch.jit.is_tracing() and waveform.shape[1] < self.min_samples:
            raise MosError(f"{self.info.name}: audio of {waveform.shape[1]} samples is shorter than the "
                           f"{self.min_samples} samples ({self.min_samples / SAMPLE_RATE * 1000:g} ms) one frame needs")
        with float32_region(waveform.device.type):
            wave = waveform.float()
            if self.do_normalize:
                wave = normalize_per_clip(wave, lengths)
            mask = None
            if self.use_mask:
                mask = (torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]).to(torch.int64)
            with warnings.catch_warnings():  # WavLM's attention mixes a bool padding mask with a float bias
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                out = self.backbone(input_values=wave, attention_mask=mask, output_hidden_states=True)
            feats = torch.stack(tuple(out.hidden_states), dim=2)  # [B, T, L, D]
        frame_lengths = self.frame_lengths(lengths)
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < frame_lengths[:, None]
        return feats * valid[:, :, None, None].to(feats.dtype), frame_lengths

    def mix(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mixer(feats)


def build(info: EncoderInfo) -> SslAudioEncoder:
    """Load the base model of the directory (offline, no remote code, eager attention); a
    directory whose weights lack any of its tensors is refused."""
    from transformers import AutoModel

    model_dir = Path(info.source)
    settings = _settings(model_dir)
    backbone = load_complete(EagerAttention(AutoModel), model_dir, f"{NAMES[settings['kind']]} model")
    # LayerDrop would skip whole layers when fine-tuning, and the layer weighting needs all of them.
    backbone.config.layerdrop = 0.0
    return SslAudioEncoder(info, backbone, settings["do_normalize"], use_mask=settings["norm"] == "layer")

