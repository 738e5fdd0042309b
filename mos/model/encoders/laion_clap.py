"""Original LAION-CLAP checkpoints (the `laion_clap` package's `.pt`, e.g.
music_audioset_epoch_15_esc_90.14.pt or 630k-audioset-best.pt) read without that package.

The checkpoint (`{"state_dict": {...}}`, keys with or without `module.`, read with
torch.load(weights_only=True)) is renamed onto transformers' `ClapModel`, as transformers'
convert_clap_original_pytorch_to_hf.py does: `text_branch` -> `text_model` (RoBERTa, same names),
`audio_branch` -> `audio_model.audio_encoder` (HTSAT: `bn0` -> `batch_norm`, `norm1/2` ->
`layernorm_before/after`, `attn.qkv` split into query/key/value, `attn.proj` ->
`attention.output.dense`, `mlp.fc1/fc2` -> `intermediate.dense`/`output.dense`), projections
`*_projection.0/2` -> `linear1/linear2`. Parts ClapModel has no use for are ignored by name
(IGNORED); any other key, and any ClapModel tensor left unfilled, is a one-line error naming them.
The shape (HTSAT depths, heads, window, widths; RoBERTa layers and width) is read from the tensors,
so HTSAT-tiny and HTSAT-base checkpoints both work; fused checkpoints are refused.

Each checkpoint is converted once into a transformers CLAP directory in the cache
(`$MOS_CACHE_DIR/laion-clap/<sha256 of the .pt>/`: config.json, model.safetensors and LAION's
extractor settings, and mos-conversion.json naming the converter that wrote it), which the clap
family then reads; the encoder stays pinned by the sha256 of the .pt itself. A directory written by
another converter version (FEATURES_VERSION) is converted again, never reused. The text tower needs
RoBERTa's tokenizer, which the checkpoint does not hold: it is taken from beside the checkpoint
(TOKENIZER_DIRS) and copied into that directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import torch

from mos.errors import MosError, one_line
from mos.files import cache_root, sha256_file
from mos.model.encoders import clap
from mos.model.encoders.base import EncoderInfo, features_version
from mos.model.encoders.pickle_compat import load_weights_only, numpy_scalar_globals

CACHE_NAME = "laion-clap"
# This family's own code is the conversion (its features are then the clap family's): bump when
# convert() writes anything different for the same checkpoint; the converted directories and the
# feature cache key on it.
FEATURES_VERSION = 1
WEIGHTS = "model.safetensors"
STAMP = "mos-conversion.json"  # in a converted directory: {"converter": converter_version()}
SPEC_SIZE = 256  # HTSAT's input image side in every LAION model (the mel image is folded into it)
ROBERTA_HEAD_DIM = 64  # RoBERTa's attention heads are 64 wide (base: 768 / 12)
ROBERTA_LAYER_NORM_EPS = 1e-5  # roberta-base's config, which laion_clap's text branch loads
# Where the RoBERTa tokenizer is looked for, relative to the checkpoint's folder, and its files.
TOKENIZER_DIRS = ("roberta-base", "tokenizer", ".")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt")
TOKENIZER_NEEDS = "RoBERTa's tokenizer (roberta-base: tokenizer.json, or vocab.json and merges.txt)"

# Checkpoint keys (after `module.`) that ClapModel has no place for, and why.
IGNORED = [
    re.compile(r"(text|audio)_transform\..*"),  # the MLPs only the contrastive training loss uses
    re.compile(r"audio_branch\.(spectrogram_extractor|logmel_extractor)\..*"),  # the front end: in the graph here
    re.compile(r"audio_branch\.(tscam_conv|head)\..*"),  # HTSAT's AudioSet classifier
    re.compile(r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask"),  # shifted-window masks, recomputed
    re.compile(r"text_branch\.embeddings\.(position_ids|token_type_ids)"),  # index buffers, recomputed
    re.compile(r"attn_mask"),
]
# ClapModel buffers computed from the config, filled from a fresh model when the checkpoint lacks them.
DERIVED = re.compile(r"text_model\.embeddings\.(position_ids|token_type_ids)|.*\.num_batches_tracked")
FUSED = re.compile(r"audio_branch\.(patch_embed\.(mel_conv2d|fusion_model)|fusion_model)\..*")

_HTSAT = "audio_model.audio_encoder."
# (checkpoint key pattern, ClapModel name), anchored; the first that matches renames the key.
RENAMES = [
    (r"text_branch\.(.+)", r"text_model.\1"),
    (r"(text|audio)_projection\.0\.(weight|bias)", r"\1_projection.linear1.\2"),
    (r"(text|audio)_projection\.2\.(weight|bias)", r"\1_projection.linear2.\2"),
    (r"logit_scale_(a|t)", r"logit_scale_\1"),
    (r"audio_branch\.bn0\.(.+)", _HTSAT + r"batch_norm.\1"),
    (r"audio_branch\.(patch_embed\.(proj|norm)\.(weight|bias))", _HTSAT + r"\1"),
    (r"audio_branch\.norm\.(weight|bias)", _HTSAT + r"norm.\1"),
    (r"audio_branch\.(layers\.\d+\.downsample\.(reduction|norm)\.(weight|bias))", _HTSAT + r"\1"),
    (r"audio_branch\.(layers\.\d+\.blocks\.\d+)\.norm1\.(weight|bias)", _HTSAT + r"\1.layernorm_before.\2"),
    (r"audio_branch\.(layers\.\d+\.blocks\.\d+)\.norm2\.(weight|bias)", _HTSAT + r"\1.layernorm_after.\2"),
    (r"audio_branch\.(layers\.\d+\.blocks\.\d+)\.attn\.qkv\.(weight|bias)", _HTSAT + r"\1.attention.self.qkv.\2"),
    (r"audio_branch\.(layers\.\d+\.blocks\.\d+)\.attn\.proj\.(weight|bias)", _HTSAT + r"\1.attention.output.dense.\2"),
    (r"audio_branch\.(layers\.\d+\.blocks\.\d+)\.attn\.(relative_position_bias_table|relative_position_index)",
     _HTSAT + r"\1.attention.self.\2"),
    (r"audio_branch\.(layers\.\d+\.blocks\.\d+)\.mlp\.fc1\.(weight|bias)", _HTSAT + r"\1.intermediate.dense.\2"),
    (r"audio_branch\.(layers\.\d+\.blocks\.\d+)\.mlp\.fc2\.(weight|bias)", _HTSAT + r"\1.output.dense.\2"),
]
_RENAMES = [(re.compile(p), r) for p, r in RENAMES]


def _names(keys: list[str]) -> str:
    shown = ", ".join(sorted(keys)[:5])
    return f"{len(keys)}: {shown}{', ...' if len(keys) > 5 else ''}"


def _load(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (`module.` removed), or a one-line MosError."""
    if not path.is_file():
        raise MosError(f"{path}: no such file (a LAION-CLAP checkpoint, e.g. music_audioset_epoch_15_esc_90.14.pt)")
    try:
        # The released checkpoints are pickled with protocol 4 and hold numpy scalars.
        loaded = load_weights_only(path, numpy_scalar_globals(), scratch=cache_root(CACHE_NAME))
    except MosError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a one-line error
        raise MosError(f"{path}: not a checkpoint torch can read safely (weights_only): {one_line(exc, limit=160)}") from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MosError(f"{path}: not a LAION-CLAP checkpoint (expected a state dict of tensors, or {{'state_dict': ...}})")
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith("audio_branch.") for k in state):
        raise MosError(f"{path}: not a LAION-CLAP checkpoint (no audio_branch.* tensors)")
    fused = [k for k in state if FUSED.fullmatch(k)]
    if fused:
        raise MosError(f"{path}: a fused LAION-CLAP checkpoint ({fused[0]}); only unfused CLAP is supported")
    return state


def read_laion_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A LAION-CLAP checkpoint's tensors under transformers' ClapModel names (qkv split into
    query/key/value, ignored parts dropped), or a one-line MosError naming any key it cannot place."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in _load(path).items():
        if any(p.fullmatch(key) for p in IGNORED):
            continue
        name = next((p.sub(r, key) for p, r in _RENAMES if p.fullmatch(key)), None)
        if name is None:
            unknown.append(key)
        elif ".attention.self.qkv." in name:
            if value.shape[0] % 3:
                raise MosError(f"{path}: {key} has {value.shape[0]} rows, not query, key and value of equal size")
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[name.replace(".qkv.", f".{part}.")] = chunk.clone()
        else:
            out[name] = value
    if unknown:
        raise MosError(f"{path}: checkpoint keys this reader cannot place in a CLAP model ({_names(unknown)})")
    return out


def _need(state: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    if key not in state:
        raise MosError(f"{path}: not a complete LAION-CLAP checkpoint (no tensor for ClapModel's {key})")
    return state[key]


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    """How many consecutive indices i from 0 have a key starting with pattern.format(i)."""
    n = 0
    while any(k.startswith(pattern.format(n)) for k in state):
        n += 1
    return n


def clap_config(state: dict[str, torch.Tensor], path: Path):
    """The ClapConfig of a renamed checkpoint, read from its tensors' shapes (HTSAT stages, heads,
    window and widths; RoBERTa layers, width, vocabulary and positions; the projection)."""
    from transformers import ClapConfig

    t = lambda key: _need(state, key, path)  # noqa: E731
    proj = t(_HTSAT + "patch_embed.proj.weight")  # [embed, channels, patch, patch]
    stages = _count(state, _HTSAT + "layers.{}.blocks.0.")
    if stages == 0:
        raise MosError(f"{path}: not a LAION-CLAP checkpoint (no HTSAT blocks)")
    depths = [_count(state, _HTSAT + f"layers.{i}.blocks.{{}}.") for i in range(stages)]
    heads = [int(t(_HTSAT + f"layers.{i}.blocks.0.attention.self.relative_position_bias_table").shape[1])
             for i in range(stages)]
    table = int(t(_HTSAT + "layers.0.blocks.0.attention.self.relative_position_bias_table").shape[0])
    side = math.isqrt(table)
    embed = int(proj.shape[0])
    hidden = int(t(_HTSAT + "norm.weight").shape[0])
    fc1 = t(_HTSAT + "layers.0.blocks.0.intermediate.dense.weight")
    if side * side != table or side % 2 == 0 or hidden != embed * 2 ** (stages - 1) or proj.shape[2] != proj.shape[3]:
        raise MosError(f"{path}: an HTSAT audio branch of a shape this reader does not know "
                       f"(patch embedding {tuple(proj.shape)}, final width {hidden}, {stages} stages)")
    projection = int(t("audio_projection.linear2.weight").shape[0])
    words = t("text_model.embeddings.word_embeddings.weight")
    width = int(words.shape[1])
    types = int(t("text_model.embeddings.token_type_embeddings.weight").shape[0])
    if types != 1 or width % ROBERTA_HEAD_DIM:
        raise MosError(f"{path}: the text branch is not RoBERTa-shaped ({types} token types, width {width}); "
                       "only LAION-CLAP's RoBERTa text branch is supported")
    if int(t("text_projection.linear2.weight").shape[0]) != projection:
        raise MosError(f"{path}: the audio and text projections differ in size")
    audio = dict(
        spec_size=SPEC_SIZE, num_mel_bins=int(t(_HTSAT + "batch_norm.weight").shape[0]),
        patch_size=int(proj.shape[2]), patch_stride=[int(proj.shape[2])] * 2, patch_embed_input_channels=int(proj.shape[1]),
        patch_embeds_hidden_size=embed, hidden_size=hidden, depths=depths, num_attention_heads=heads,
        window_size=(side + 1) // 2, mlp_ratio=int(fc1.shape[0]) / int(fc1.shape[1]),
        enable_patch_layer_norm=_HTSAT + "patch_embed.norm.weight" in state, enable_fusion=False,
        projection_dim=projection,
    )
    text = dict(
        vocab_size=int(words.shape[0]), hidden_size=width, num_attention_heads=width // ROBERTA_HEAD_DIM,
        num_hidden_layers=_count(state, "text_model.encoder.layer.{}."),
        intermediate_size=int(t("text_model.encoder.layer.0.intermediate.dense.weight").shape[0]),
        max_position_embeddings=int(t("text_model.embeddings.position_embeddings.weight").shape[0]),
        type_vocab_size=types, layer_norm_eps=ROBERTA_LAYER_NORM_EPS, projection_dim=projection,
    )
    return ClapConfig(audio_config=audio, text_config=text, projection_dim=projection)


def convert(path: Path, dest: Path) -> Path:
    """Write the checkpoint as a transformers CLAP directory at `dest` (config.json,
    model.safetensors, preprocessor_config.json with LAION's extractor settings)."""
    from transformers import ClapFeatureExtractor, ClapModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    state = read_laion_checkpoint(path)
    config = clap_config(state, path)
    model = ClapModel(config).eval()
    target = model.state_dict()
    missing = [k for k in target if k not in state and not DERIVED.fullmatch(k)]
    if missing:
        raise MosError(f"{path}: the checkpoint lacks ClapModel tensors ({_names(missing)})")
    extra = [k for k in state if k not in target]
    if extra:
        raise MosError(f"{path}: checkpoint tensors with no place in the CLAP model it describes ({_names(extra)})")
    wrong = [k for k in state if tuple(state[k].shape) != tuple(target[k].shape)]
    if wrong:
        k = wrong[0]
        raise MosError(f"{path}: {len(wrong)} tensors of an unexpected shape, e.g. {k} {tuple(state[k].shape)} "
                       f"(expected {tuple(target[k].shape)})")
    model.load_state_dict({**target, **state}, strict=True)
    model.save_pretrained(str(dest))
    s = clap.DEFAULT_EXTRACTOR
    ClapFeatureExtractor(
        feature_size=s["feature_size"], sampling_rate=s["sampling_rate"], hop_length=s["hop_length"],
        max_length_s=s["max_length_s"], fft_window_size=s["fft_window_size"], frequency_min=s["frequency_min"],
        frequency_max=s["frequency_max"], padding=s["padding"], truncation="rand_trunc",
    ).save_pretrained(str(dest))
    return dest


def converter_version() -> str:
    """The code that converts checkpoints here, as stored in each converted directory."""
    return features_version("laion-clap", FEATURES_VERSION)


def _converted_by(dest: Path) -> str | None:
    """The converter version a complete converted directory records (None: incomplete, or written
    before directories recorded it)."""
    if not ((dest / "config.json").is_file() and (dest / WEIGHTS).is_file()):
        return None
    try:
        made_by = json.loads((dest / STAMP).read_text(encoding="utf-8")).get("converter")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None
    return made_by if isinstance(made_by, str) else None


def converted_dir(path: Path, sha256: str) -> Path:
    """The cache's CLAP directory for the checkpoint whose sha256 is `sha256`, converted now if it
    is not there yet or was written by another converter version (said in one line on stderr);
    written beside it, then renamed into place: never seen half-written."""
    dest = cache_root(CACHE_NAME) / sha256
    made_by, want = _converted_by(dest), converter_version()
    if made_by == want:
        return dest
    if (dest / "config.json").is_file() and (dest / WEIGHTS).is_file():
        print(f"{dest}: converted by other mos code ({made_by or 'an unversioned converter'}; this mos is {want}), "
              f"converting {path.name} again", file=sys.stderr, flush=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{sha256}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(path, tmp)
        (tmp / STAMP).write_text(json.dumps({"converter": want}) + "\n", encoding="utf-8")
        if dest.exists():  # an incomplete leftover, or one another converter wrote
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except OSError as exc:
        if _converted_by(dest) != want:  # else another process has just converted it
            raise MosError(f"{dest}: cannot write the converted checkpoint ({one_line(exc, limit=120)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve(spec: str) -> EncoderInfo:
    """A LAION-CLAP checkpoint -> EncoderInfo of its audio tower (converted into the cache on first
    use), pinned by the sha256 of the .pt."""
    path = Path(spec).resolve()
    if not path.is_file():
        raise MosError(f"{spec}: no such file (a LAION-CLAP checkpoint, e.g. music_audioset_epoch_15_esc_90.14.pt)")
    sha256 = sha256_file(path)
    info = clap.resolve(str(converted_dir(path, sha256)))
    return replace(info, name=f"LAION-CLAP checkpoint {path.name} (audio tower)", source=str(path), sha256=sha256,
                   code_version=f"{info.code_version}+{converter_version()}")


def build(info: EncoderInfo) -> clap.ClapAudioEncoder:
    """The audio tower of the converted checkpoint (converted again if the cache lost it)."""
    model_dir = converted_dir(Path(info.source), info.sha256)
    encoder = clap.build(replace(info, source=str(model_dir)))
    encoder.info = info
    return encoder


def _tokenizer_dir(path: Path) -> Path:
    for name in TOKENIZER_DIRS:
        folder = (path.parent / name).resolve()
        if (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()):
            return folder
    where = " or ".join(str(path.parent / n) if n != "." else str(path.parent) for n in TOKENIZER_DIRS)
    raise MosError(f"{path}: the CLAP text tower needs {TOKENIZER_NEEDS}, which the checkpoint does not hold; "
                   f"put those files in {where} (nothing is downloaded; the audio tower needs no tokenizer)")


def text_model_dir(spec: str) -> tuple[Path, str]:
    """A LAION-CLAP checkpoint as a text encoder: the converted CLAP directory with the RoBERTa
    tokenizer found beside the checkpoint copied in, and the sha256 pinning both (the .pt and the
    tokenizer files), or a one-line MosError saying which tokenizer files are needed and where."""
    path = Path(spec).resolve()
    if not path.is_file():
        raise MosError(f"{spec}: no such file (a LAION-CLAP checkpoint, e.g. music_audioset_epoch_15_esc_90.14.pt)")
    source = _tokenizer_dir(path)
    sha256 = sha256_file(path)
    model_dir = converted_dir(path, sha256)
    h = hashlib.sha256(f"checkpoint\0{sha256}\n".encode())
    for name in TOKENIZER_FILES:  # the cache holds exactly the tokenizer found now
        src, dst = source / name, model_dir / name
        if src.is_file():
            h.update(f"{name}\0{sha256_file(src)}\n".encode())
            if not dst.is_file() or sha256_file(dst) != sha256_file(src):
                shutil.copyfile(src, dst)
        elif dst.is_file():
            dst.unlink()
    return model_dir, h.hexdigest()
