"""The export wrapper: MosModel -> one on-scale [batch] output per target, with ONNX names and axes."""

from __future__ import annotations

import torch
from torch import nn

from mos.model import MosModel

AUDIO_INPUTS = ("waveform", "lengths")
TEXT_INPUTS = ("text", "text_lengths")
TEXT_MODEL_INPUTS = ("input_ids", "attention_mask")
TEXT_MODEL_OUTPUT = "text"


class AudioExport(nn.Module):
    """forward(waveform, lengths[, text, text_lengths]) -> tuple of [batch] scores, one per target."""

    def __init__(self, model: MosModel) -> None:
        super().__init__()
        self.model = model
        self.n_targets = len(model.cfg.targets)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor, *text: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats, feat_lengths = (text[0], text[1]) if text else (None, None)
        scores = self.model.scores(waveform, lengths, feats, feat_lengths)
        return tuple(scores[:, j] for j in range(self.n_targets))


def audio_input_names(model: MosModel) -> list[str]:
    return list(AUDIO_INPUTS) + (list(TEXT_INPUTS) if model.cfg.uses_text else [])


def audio_output_names(model: MosModel) -> list[str]:
    return list(model.cfg.target_names)


def audio_dynamic_axes(inputs: list[str], outputs: list[str]) -> dict[str, dict[int, str]]:
    """Batch everywhere, samples on the waveform, tokens on the text features."""
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in inputs + outputs}
    axes["waveform"] = {0: "batch", 1: "samples"}
    if "text" in axes:
        axes["text"] = {0: "batch", 1: "tokens"}
    return axes


def text_dynamic_axes() -> dict[str, dict[int, str]]:
    return {name: {0: "batch", 1: "tokens"} for name in (*TEXT_MODEL_INPUTS, TEXT_MODEL_OUTPUT)}


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
