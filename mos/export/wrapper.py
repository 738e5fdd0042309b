"""The export wrapper: MosModel -> one on-scale, unclamped [batch] output per target, with ONNX
names and axes (the runtime clamps after averaging a long clip's windows)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from mos.distribution import spread_column
from mos.bundle import AUDIO_INPUTS, EMBEDDING_OUTPUT, TEXT_INPUTS, TEXT_MODEL_INPUTS, TEXT_MODEL_OUTPUT
from mos.model import MosModel


class Conv1dAs2d(nn.Module):
    """The same convolution as an nn.Conv1d, run as a Conv2d with kernel (1, k): ONNX Runtime's
    CPU kernels for 2-D convolutions are faster on the encoder's shapes (docs/onnx-notes.md), and
    the scores are identical."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                              stride=(1, conv.stride[0]), padding=(0, conv.padding[0]), bias=conv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.unsqueeze(2))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(2)).squeeze(2)


def with_2d_convs(model: MosModel) -> MosModel:
    """A copy of the model whose audio-encoder Conv1d layers run as Conv2d (export only); the
    built-in conv encoder only (a pretrained encoder is exported as it is)."""
    if model.cfg.pretrained_audio:
        return model
    model = copy.deepcopy(model)
    for module in list(model.audio_encoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv1d):
                setattr(module, name, Conv1dAs2d(child))
    return model


class AudioExport(nn.Module):
    """forward(waveform, lengths[, text, text_lengths]) -> tuple of [batch] scores, one per target,
    on the target's scale and not clamped to its range; then, for a distribution model, each
    target's listener spread (`<target>_std`); last the pooled audio embedding [batch, dim]
    (`MosModel.pooled_audio`: what `mos distill` teaches a student with)."""

    def __init__(self, model: MosModel) -> None:
        super().__init__()
        self.model = with_2d_convs(model)
        self.n_targets = len(model.cfg.targets)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor, *text: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats, feat_lengths = (text[0], text[1]) if text else (None, None)
        model = self.model
        frames, frame_lengths = model.encode_audio(waveform, lengths)
        logits = model.head_outputs(frames, frame_lengths, feats, feat_lengths)
        scores = model.to_scale(model.normalised(logits), clamp=False)
        out = tuple(scores[:, j] for j in range(self.n_targets))
        if model.cfg.predicts_spread:
            spread = model.spread(logits)
            out += tuple(spread[:, j] for j in range(self.n_targets))
        return out + (model.pooled_audio(frames, frame_lengths),)


def audio_input_names(model: MosModel) -> list[str]:
    return list(AUDIO_INPUTS) + (list(TEXT_INPUTS) if model.cfg.uses_text else [])


def audio_output_names(model: MosModel) -> list[str]:
    names = list(model.cfg.target_names)
    return names + ([spread_column(n) for n in names] if model.cfg.predicts_spread else []) + [EMBEDDING_OUTPUT]


def audio_dynamic_axes(inputs: list[str], outputs: list[str]) -> dict[str, dict[int, str]]:
    """Batch everywhere, samples on the waveform, tokens on the text features."""
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in inputs + outputs}
    axes["waveform"] = {0: "batch", 1: "samples"}  # the embedding's second dim is fixed: {0: batch} too
    if "text" in axes:
        axes["text"] = {0: "batch", 1: "tokens"}
    return axes


def text_dynamic_axes(pooled: bool = False) -> dict[str, dict[int, str]]:
    """Batch and tokens on text.onnx's inputs; on its output too, except for an encoder that pools
    (one row per caption: that axis is a fixed 1)."""
    axes = {name: {0: "batch", 1: "tokens"} for name in TEXT_MODEL_INPUTS}
    axes[TEXT_MODEL_OUTPUT] = {0: "batch"} if pooled else {0: "batch", 1: "tokens"}
    return axes


def text_output_dims(dim: int, pooled: bool) -> list[str | int]:
    """The dims of text.onnx's output: [batch, tokens, dim], or [batch, 1, dim] for a pooled encoder."""
    return ["batch", 1 if pooled else "tokens", int(dim)]


def expected_dims(name: str) -> list[str | int | None]:
    """The symbolic dims a bundle input/output must carry (None: any fixed size allowed)."""
    table: dict[str, list[str | int | None]] = {
        "waveform": ["batch", "samples"],
        "lengths": ["batch"],
        "text": ["batch", "tokens", None],
        "text_lengths": ["batch"],
        "input_ids": ["batch", "tokens"],
        "attention_mask": ["batch", "tokens"],
    }
    return table.get(name, ["batch"])
