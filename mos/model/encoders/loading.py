"""Finding the weights a PyPI package ships (aisfx, distillmos: found, never imported), and reading
a local transformers model directory, for the pretrained audio encoders and the text encoder alike: its `model_type`, whether its weights are there, the files that decide its
outputs and the sha256 over them that pins it (a checkpoint records it; export and the trainer
refuse an encoder whose files changed), and loading it offline, complete, in eval mode.
Nothing is ever downloaded and no remote code runs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path
from typing import Any

from torch import nn

from mos.errors import MosError, one_line
from mos.files import sha256_file

PREPROCESSOR = "preprocessor_config.json"  # a transformers directory's feature extractor settings
# The files of a transformers model directory that decide its outputs: weights, config and
# tokenizer (top level only; a directory's other files, e.g. a README, do not count).
ENCODER_FILE_PATTERNS = (
    "config.json", "*.safetensors", "*.bin", "*.index.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model",
    PREPROCESSOR,  # an audio encoder's front-end settings (CLAP, AST)
)


def packaged_file(package: str, relative: str, install: str, why_no_deps: str) -> Path:
    """The file `relative` inside an installed package, found without importing the package, or a
    one-line MosError saying how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MosError(f"--audio-encoder {package}: the {package} package is not installed; install it with "
                       f"`{install}` (its weights ship in the package; {why_no_deps})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MosError(f"{path}: missing from the installed {package} package; reinstall it with `{install}`")
    return path


def package_version(package: str) -> str:
    """The installed version of a package, or "unknown"."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_model_type(model_dir: Path) -> str:
    """`model_type` from a transformers directory's config.json, or a one-line MosError."""
    config = model_dir / "config.json"
    if not model_dir.is_dir():
        raise MosError(f"{model_dir}: no such directory (an audio encoder is 'conv', 'aisfx', 'distillmos' or a local transformers model directory)")
    if not config.is_file():
        raise MosError(f"{model_dir}: not a transformers model directory (no config.json); nothing is downloaded, "
                       "save the model there first (e.g. model.save_pretrained(DIR))")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise MosError(f"{config}: not a readable config.json ({type(exc).__name__})") from None
    if not model_type:
        raise MosError(f"{config}: has no model_type")
    return str(model_type)


def check_weights_present(model_dir: Path) -> None:
    """A one-line MosError when a transformers directory has no weight file (a partial copy)."""
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        raise MosError(f"{model_dir}: no weights (*.safetensors or *.bin) in this model directory; it is incomplete")


def encoder_files(model_dir: Path) -> list[Path]:
    """The weight, config and tokenizer files of a local transformers directory, sorted by name."""
    found = {f for pattern in ENCODER_FILE_PATTERNS for f in model_dir.glob(pattern) if f.is_file()}
    return sorted(found, key=lambda f: f.name)


def encoder_sha256(model_dir: Path) -> str:
    """sha256 over the names and contents of `encoder_files(model_dir)`: what pins an encoder."""
    files = encoder_files(model_dir)
    if not files:
        raise MosError(f"{model_dir}: no weight or tokenizer files to pin the text encoder by")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def load_complete(model_class: Any, model_dir: Path, part: str) -> nn.Module:
    """`model_class.from_pretrained(model_dir)` offline (no remote code), in eval mode; a one-line
    MosError when it fails or when the weights lack any of its tensors (which transformers would
    otherwise leave randomly initialised). `part` names it in the message, e.g. "CLAP text tower"."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    check_weights_present(model_dir)
    try:
        model, loading = model_class.from_pretrained(
            str(model_dir), local_files_only=True, trust_remote_code=False, output_loading_info=True)
    except Exception as exc:  # transformers raises many types for a broken directory
        raise MosError(f"{model_dir}: cannot load the {part} ({one_line(exc, limit=200)})") from None
    missing = sorted(loading.get("missing_keys", []))
    if missing:
        raise MosError(f"{model_dir}: the weights lack {len(missing)} {part} tensors (e.g. {missing[0]}); the directory is incomplete")
    return model.eval()


class EagerAttention:
    """A transformers model class loaded with eager attention (what the TorchScript exporter traces
    faithfully), for `load_complete`, which calls `from_pretrained`."""

    def __init__(self, auto: Any) -> None:
        self.auto = auto

    def from_pretrained(self, path: str, **kwargs: Any) -> nn.Module:
        return self.auto.from_pretrained(path, attn_implementation="eager", **kwargs)
