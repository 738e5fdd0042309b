"""Export the frozen text encoder to text.onnx and write its tokenizer.json beside it."""

from __future__ import annotations

from pathlib import Path

from mos.export.clips import CAPTIONS
from mos.export.onnx_io import export_torchscript
from mos.export.wrapper import TEXT_MODEL_INPUTS, TEXT_MODEL_OUTPUT, text_dynamic_axes
from mos.model.text_encoder import FrozenTextEncoder

TEXT_MODEL = "text.onnx"
TOKENIZER = "tokenizer.json"


def export_text(encoder: FrozenTextEncoder, out: Path, opset: int) -> tuple[Path, Path]:
    """Write text.onnx (dynamic batch and tokens, output 'text': [batch, tokens, dim], or
    [batch, 1, dim] for an encoder that pools) and tokenizer.json into `out`."""
    # Batch 2 with unequal caption lengths: a padded trace, so neither batch nor tokens is fixed.
    batch = encoder.tokenize([CAPTIONS[0], CAPTIONS[2]])
    model_path = out / TEXT_MODEL
    export_torchscript(
        encoder.module,
        (batch["input_ids"], batch["attention_mask"]),
        model_path,
        opset,
        list(TEXT_MODEL_INPUTS),
        [TEXT_MODEL_OUTPUT],
        text_dynamic_axes(encoder.pooled),
    )
    tokenizer_path = out / TOKENIZER
    encoder.save_tokenizer(tokenizer_path)
    return model_path, tokenizer_path
