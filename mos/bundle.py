"""The bundle format shared by export (writer) and runtime (reader): `mos.json` schema, file
hashes, and validation. Torch-free.

A bundle is a directory:
  audio.onnx       inputs  waveform [batch, samples] float32, lengths [batch] int64,
                           (text [batch, tokens, dim] float32, text_lengths [batch] int64 when the
                           model uses text); outputs one [batch] float32 tensor per target, named by
                           the target, on the target's scale but NOT clamped to its range: average
                           the windows of a long clip (weighted by length), then clamp each target
                           to its [low, high] (schema 1 bundles clamped inside the graph).
                           Bundles that list `audio.embedding` also output `embedding` [batch, dim]:
                           the pooled audio embedding (the masked mean of the encoder's frames),
                           which does not depend on the caption (`mos distill` teaches with it).
  text.onnx        inputs  input_ids [batch, tokens] int64, attention_mask [batch, tokens] int64;
                   output  text [batch, tokens, dim] float32 (token features; use the first
                           n_i rows of caption i, n_i = its attention_mask sum).
                   audio.padding_invariant false: zero padding changes the output, so batch
                   only clips of equal length (the runtime does).
  tokenizer.json   for the `tokenizers` library (truncate to text.max_tokens).
  audio.int8.onnx / audio.fp16.onnx   optional variants with the same interface.
  text.int8.onnx   optional int8 text.onnx (variants["text_int8"]), used with audio.int8.onnx.
  mos.json         this module's schema; mirrored into each ONNX file's metadata_props["mos.json"]
                   (without the "files" hashes, which cannot hash themselves).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mos.errors import BundleError
from mos.files import sha256_file, write_text_atomic

# /2: audio.onnx outputs are unclamped (clamp after averaging a long clip's windows); /1 bundles
# clamped each window inside the graph. Both read the same way.
# audio.onnx's pooled audio embedding output (bundles whose mos.json lists audio.embedding).
EMBEDDING_OUTPUT = "embedding"
SCHEMA = "mos.bundle/2"
SCHEMAS = ("mos.bundle/1", SCHEMA)
# The interface every bundle's ONNX files share (see the module docstring).
AUDIO_INPUTS = ("waveform", "lengths")
TEXT_INPUTS = ("text", "text_lengths")
TEXT_MODEL_INPUTS = ("input_ids", "attention_mask")
TEXT_MODEL_OUTPUT = "text"
BUNDLE_META_FILE = "mos.json"
# mos.json "variants" keys with this prefix are text-model variants ("text_int8"); others are audio.
TEXT_VARIANT_PREFIX = "text_"


@dataclass(frozen=True)
class BundleTarget:
    name: str
    low: float
    high: float


@dataclass
class Bundle:
    """A validated bundle directory and what its mos.json says."""

    root: Path
    meta: dict[str, Any]
    targets: list[BundleTarget] = field(default_factory=list)

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def window_seconds(self) -> float:
        return float(self.meta.get("window_seconds", 10.0))

    @property
    def padding_invariant(self) -> bool:
        """False when zero padding changes the audio model's output (GroupNorm-over-time encoders):
        such clips are batched only with clips of the same length."""
        return bool(self.meta["audio"].get("padding_invariant", True))

    @property
    def predicts_spread(self) -> bool:
        """True when audio.onnx also outputs each target's listener spread (`<target>_std`)."""
        return bool(self.meta["audio"].get("spread", False))

    @property
    def uses_text(self) -> bool:
        return self.meta.get("text") is not None

    @property
    def embedding_dim(self) -> int:
        """The size of audio.onnx's `embedding` output (the pooled audio embedding); 0 for a bundle
        exported before it was added."""
        return int((self.meta["audio"].get("embedding") or {}).get("dim", 0))

    @property
    def text_pooled(self) -> bool:
        """True when text.onnx gives one (pooled) row per caption, [batch, 1, dim], instead of one
        per token (mos.json text.pooled; absent in older bundles: per token)."""
        return self.uses_text and bool(self.meta["text"].get("pooled", False))

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    def path(self, key: str) -> Path:
        return self.root / key

    def audio_model(self, variant: str = "fp32") -> Path:
        """Path of the audio model: 'fp32' (audio.onnx), 'int8' or 'fp16' when exported."""
        if variant == "fp32":
            return self.root / self.meta["audio"]["model"]
        name = self.meta.get("variants", {}).get(variant)
        if name is None:
            raise BundleError(f"{self.root}: this bundle has no {variant} variant (re-export with the option for it)")
        return self.root / name

    @property
    def audio_variants(self) -> dict[str, str]:
        """Variant -> file of the audio model's variants ('int8', 'fp16'), without text variants."""
        return {k: v for k, v in self.meta.get("variants", {}).items() if not k.startswith(TEXT_VARIANT_PREFIX)}

    def has_text_variant(self, variant: str) -> bool:
        return self.uses_text and f"{TEXT_VARIANT_PREFIX}{variant}" in self.meta.get("variants", {})

    def text_model(self, variant: str = "fp32") -> Path:
        """Path of the text model: 'fp32' (text.onnx) or 'int8' (text.int8.onnx) when exported."""
        if variant == "fp32":
            return self.root / self.meta["text"]["model"]
        name = self.meta.get("variants", {}).get(f"{TEXT_VARIANT_PREFIX}{variant}") if self.uses_text else None
        if name is None:
            raise BundleError(f"{self.root}: this bundle has no {variant} text model (re-export with the option for it)")
        return self.root / name

    def tokenizer(self) -> Path:
        return self.root / self.meta["text"]["tokenizer"]


def bundle_from_meta(root: Path, meta: dict[str, Any], where: Path | None = None) -> Bundle:
    """A Bundle for `root` described by `meta` (mos.json content): schema known, keys present.
    Files are not looked at (export measures its files through this before mos.json is written)."""
    where = where or root / BUNDLE_META_FILE
    schema = meta.get("schema")
    if schema not in SCHEMAS:
        raise BundleError(f"{where}: unknown bundle schema {schema!r} (this mos reads {', '.join(map(repr, SCHEMAS))})")
    for key in ("sample_rate", "targets", "audio", "files"):
        if key not in meta:
            raise BundleError(f"{where}: missing key {key!r}")
    targets = [BundleTarget(t["name"], float(t["low"]), float(t["high"])) for t in meta["targets"]]
    return Bundle(Path(root), meta, targets)


def verify_files(bundle: Bundle) -> None:
    """Every file mos.json lists matches its sha256, else BundleError naming the first that does not."""
    for name, digest in bundle.meta["files"].items():
        path = bundle.root / name
        if sha256_file(path) != digest:
            raise BundleError(f"{path}: corrupted (sha256 does not match {BUNDLE_META_FILE})")


def load_bundle(root: Path | str, verify_hashes: bool = True) -> Bundle:
    """Read and validate a bundle: schema known, every listed file present and, by default,
    matching its sha256 (`verify_files`; `mos score` runs it beside its session start-up).
    Raises BundleError naming the file and the problem."""
    root = Path(root)
    meta_path = root / BUNDLE_META_FILE
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory")
    if not meta_path.is_file():
        raise BundleError(f"{meta_path}: missing (not a mos bundle, or an incomplete export)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: not a JSON object")
    bundle = bundle_from_meta(root, meta, where=meta_path)
    files: dict[str, str] = meta["files"]
    for name in files:
        if not (root / name).is_file():
            raise BundleError(f"{root / name}: missing from the bundle")
    if verify_hashes:
        verify_files(bundle)
    needed = [bundle.audio_model().name]
    if bundle.uses_text:
        needed += [bundle.text_model().name, bundle.tokenizer().name]
    for name in needed:
        if name not in files:
            raise BundleError(f"{root / name}: not listed in mos.json files")
    return bundle


def write_bundle_meta(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Hash every file named in meta['files'] (keys; values ignored) and write mos.json."""
    meta = dict(meta)
    meta["schema"] = SCHEMA
    meta["files"] = {name: sha256_file(root / name) for name in sorted(meta.get("files", {}))}
    write_text_atomic(root / BUNDLE_META_FILE, json.dumps(meta, indent=2))
    return meta
