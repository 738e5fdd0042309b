"""The text side of an M2D-CLAP checkpoint as a text encoder: `--text-encoder FOLDER/checkpoint-N.pth`
(a `.pth` in a folder named as the releases are, e.g.
`m2d_clap_vit_base-80x1001p16x16p16kpBpTI-2025/checkpoint-30.pth`).

The folder name's extra fields say which transformers text model M2D-CLAP was trained with (as
portable_m2d's parse_clap_type reads them): `pA` (or none) GTE base (thenlper/gte-base), `pB`
BERT base (google-bert/bert-base-uncased); `pTI` after it says the checkpoint holds the tuned text
model's weights (`text_encoder.*`). That model's folder (config.json, tokenizer, and for a
checkpoint without `pTI` its weights) must be saved locally BESIDE the checkpoint, named
`gte-base/` or `bert-base-uncased/`; nothing is downloaded, no remote code runs.

One embedding per caption, as portable_m2d's encode_clap_text computes it: GTE: the mean of the
last hidden state over the caption's tokens; BERT: its first ([CLS]) token; then the checkpoint's
`text_proj` (Linear, or Linear-ReLU-Linear), then L2-normalised (as our CLAP text embeddings
are, and as the XACLE 2027 baseline normalises it): [B, 1, D].
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from mos.errors import MosError
from mos.files import sha256_file
from mos.model.encoders.clap import l2_normalize
from mos.model.encoders.loading import encoder_sha256, load_complete
from mos.model.encoders.m2d import parse_folder_name, read_state

# text model letter in the folder name -> (local folder name beside the checkpoint, pooling)
TEXT_MODELS = {"A": ("gte-base", "mean"), "B": ("bert-base-uncased", "cls")}
# the checkpoint's prefix of the text model's tensors, per pooling (portable_m2d's module names)
TEXT_PREFIX = {"mean": "text_encoder.model.", "cls": "text_encoder.text_encoder."}


def is_m2d_clap_text(spec: str) -> bool:
    """Whether a text encoder spec names an M2D(-CLAP) checkpoint file (a path ending in .pth)."""
    return spec.lower().endswith(".pth")


def text_model_letter(path: Path) -> tuple[str, bool]:
    """("A"|"B", whether the checkpoint includes the text model) from the folder name."""
    parse_folder_name(path)
    extra = path.parent.name.split("-")[1].split("p")[3:]
    letter = extra[0] if extra else "A"
    if letter not in TEXT_MODELS:
        raise MosError(f"{path}: text model {letter!r} in the folder name; M2D-CLAP text encoders here are "
                       "pA (GTE base) or pB (BERT base)")
    return letter, len(extra) > 1 and extra[1] == "TI"


class M2DClapText(nn.Module):
    """(input_ids, attention_mask) -> the L2-normalised, projected caption embedding [B, 1, D]."""

    def __init__(self, backbone: nn.Module, text_proj: nn.Module, pooling: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.text_proj = text_proj
        self.pooling = pooling
        self.dim = int([m for m in text_proj.modules() if isinstance(m, nn.Linear)][-1].out_features)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.to(hidden.dtype)[:, :, None]
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
        return l2_normalize(self.text_proj(pooled)).unsqueeze(1)


def _text_proj(path: Path, state: dict[str, torch.Tensor]) -> nn.Module:
    if "text_proj.weight" in state:
        out_dim, in_dim = state["text_proj.weight"].shape
        proj: nn.Module = nn.Linear(in_dim, out_dim)
        keys = {"weight": "text_proj.weight", "bias": "text_proj.bias"}
    elif "text_proj.2.weight" in state:
        out_dim, in_dim = state["text_proj.2.weight"].shape
        proj = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))
        keys = {f"{i}.{p}": f"text_proj.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    else:
        raise MosError(f"{path}: no text_proj tensors; not an M2D-CLAP checkpoint (an M2D one has no text side)")
    missing = [v for v in keys.values() if v not in state]
    if missing:
        raise MosError(f"{path}: the text projection lacks {', '.join(missing)}")
    try:
        proj.load_state_dict({k: state[v] for k, v in keys.items()})
    except RuntimeError as exc:
        raise MosError(f"{path}: text_proj tensors do not fit ({str(exc).splitlines()[-1].strip()})") from None
    return proj


def pin(spec: str) -> tuple[Path, str]:
    """(the local transformers folder beside the checkpoint, the sha256 pinning the checkpoint and
    that folder), or a one-line MosError; nothing is loaded."""
    path = Path(spec)
    if not path.is_file():
        raise MosError(f"{spec}: no such M2D-CLAP checkpoint file")
    letter, included = text_model_letter(path)
    folder_name = TEXT_MODELS[letter][0]
    model_dir = path.parent / folder_name
    if not (model_dir / "config.json").is_file():
        raise MosError(f"{path}: its text model {folder_name} is needed in {model_dir} (a transformers folder saved "
                       "with save_pretrained: config.json, tokenizer files" + ("" if included else ", weights") + ")")
    h = hashlib.sha256(f"checkpoint\0{sha256_file(path)}\nfolder\0{encoder_sha256(model_dir)}\n".encode())
    return model_dir, h.hexdigest()


def load(spec: str, model_dir: Path) -> M2DClapText:
    """The text model (from `model_dir`, pin's folder; with `pTI` the checkpoint's weights) +
    text_proj, or a one-line MosError."""
    from transformers import AutoModel

    path = Path(spec)
    letter, included = text_model_letter(path)
    folder_name, pooling = TEXT_MODELS[letter]
    state = read_state(path)
    proj = _text_proj(path, state)
    backbone = load_complete(AutoModel, model_dir, f"{folder_name} text model")
    if included:
        prefix = TEXT_PREFIX[pooling]
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        own = backbone.state_dict()
        missing = [k for k in own if k not in weights and not k.endswith("position_ids")]
        unexpected = [k for k in weights if k not in own]
        if missing or unexpected:
            raise MosError(f"{path}: its {prefix}* tensors do not fit {model_dir} (missing "
                           f"{', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})")
        try:
            backbone.load_state_dict(weights, strict=False)
        except RuntimeError as exc:
            raise MosError(f"{path}: its {prefix}* tensors do not fit {model_dir} ({str(exc).splitlines()[-1].strip()})") from None
    takes = int(next(iter(proj.parameters())).shape[1])
    if backbone.config.hidden_size != takes:
        raise MosError(f"{path}: text_proj takes {takes} features; {model_dir} gives {backbone.config.hidden_size}")
    return M2DClapText(backbone.eval(), proj.eval(), pooling).eval()
