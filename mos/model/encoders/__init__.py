"""Pretrained audio encoders behind one contract (mos.model.encoders.base), chosen by a spec:

- "distillmos": Distill-MOS, the speech-quality model whose weights ship in the PyPI package
  distillmos 0.9.1 (installed with --no-deps, never imported; 16 kHz, one 200-d embedding per
  7.68 s window; its published 1-5 head for `mos export --pretrained distillmos`);
- "aisfx": the sound-effects CNN whose weights ship in the PyPI package aisfx 0.1.2 (installed
  with --no-deps, never imported; 44.1 kHz, one 512-d embedding per ~2.3 s block);
- a local transformers directory, recognised by its config.json `model_type`: clap (the audio
  tower of ClapModel, 48 kHz); audio-spectrogram-transformer (AST, 16 kHz, Kaldi fbank, one
  pooled embedding per 1024-frame window); wav2vec2, hubert, wavlm, data2vec-audio
  (self-supervised speech models, 16 kHz, a learned weighting of their hidden layers);
- a LAION-CLAP checkpoint file (`*.pt`, the laion_clap package's state dict), converted once into
  a CLAP directory in the cache and then used as one (mos.model.encoders.laion_clap);
- an M2D / M2D-AS / M2D-CLAP checkpoint file (`*.pth` in a folder named as nttcslab/m2d releases
  are, e.g. m2d_vit_base-80x608p16x16-221006-mr7/checkpoint-300.pth; its audio tower, frame-level
  features; with `#clap` after the path, an M2D-CLAP checkpoint's projected CLAP audio embedding;
  mos.model.encoders.m2d);
- two or more of these joined with '+' (e.g. "aisfx+distillmos"): a stack of frozen encoders whose
  pooled embeddings are concatenated (mos.model.encoders.stack).

"conv" (the built-in edge encoder) is not here: MosModel builds it with its log-mel front end.
Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mos.errors import MosError
from mos.model.encoders.base import EncoderInfo, PretrainedAudioEncoder, is_laion_checkpoint, is_m2d_checkpoint
from mos.model.encoders.loading import read_model_type
from mos.model.encoders.stack import KIND as STACK, StackedAudioEncoder, combine, is_stack, member_specs

if TYPE_CHECKING:
    from mos.model.config import ModelConfig

CONV = "conv"
AISFX = "aisfx"
DISTILLMOS = "distillmos"


def _family(spec: str):
    """The module that implements `spec` (each has resolve(spec) -> EncoderInfo and build(info))."""
    if spec == AISFX:
        from mos.model.encoders import aisfx

        return aisfx
    if spec == DISTILLMOS:
        from mos.model.encoders import distillmos

        return distillmos
    if is_laion_checkpoint(spec):
        from mos.model.encoders import laion_clap

        return laion_clap
    if is_m2d_checkpoint(spec):
        from mos.model.encoders import m2d

        return m2d
    model_type = read_model_type(Path(spec))
    if model_type == "clap":
        from mos.model.encoders import clap

        return clap
    if model_type == "audio-spectrogram-transformer":
        from mos.model.encoders import ast

        return ast
    from mos.model.encoders import ssl

    if model_type in ssl.KINDS:
        return ssl
    raise MosError(f"{spec}: model_type {model_type!r} is not an audio encoder this mos can use "
                   f"(it reads: clap, audio-spectrogram-transformer, {', '.join(ssl.KINDS)})")


def resolve_audio_encoder(spec: str) -> EncoderInfo:
    """What `spec` is (kind, rate, window, size, sha256), or a one-line MosError naming the problem."""
    if spec == CONV:
        raise MosError("'conv' is the built-in encoder; it has no pretrained source to resolve")
    if is_stack(spec):
        return combine(spec, [_family(part).resolve(part) for part in member_specs(spec)])
    return _family(spec).resolve(spec)


def canonical_spec(spec: str) -> str:
    """`spec` as a model records it: a directory or checkpoint file made absolute (each member of a
    stack too); names such as "aisfx" as they are."""
    if is_stack(spec):
        return "+".join(canonical_spec(part) for part in member_specs(spec))
    if is_m2d_checkpoint(spec):  # the file made absolute, `#clap` kept
        from mos.model.encoders.m2d import CLAP_SUFFIX, split_spec

        base, clap = split_spec(spec)
        return str(Path(base).resolve()) + (CLAP_SUFFIX if clap else "")
    local = Path(spec).is_dir() or is_laion_checkpoint(spec)
    return str(Path(spec).resolve()) if local else spec


def fed_unresampled(info: EncoderInfo, rate: int) -> EncoderInfo:
    """`info` for audio fed at `rate` Hz to an encoder made for info.sample_rate, without resampling
    (the MusicEval baseline feeds 16 kHz audio to 48 kHz CLAP): the encoder's window keeps its
    samples, so it lasts sample_rate / rate times longer. Only for reproducing such a system; a
    one-line MosError for an encoder without a fixed window."""
    if rate == info.sample_rate:
        return info
    if info.kind == STACK:
        raise MosError(f"encoder_input_rate {rate}: not for a stack of encoders")
    if info.window_seconds is None:
        raise MosError(f"encoder_input_rate {rate}: only for encoders with a fixed window (CLAP, AST), "
                       f"not {info.kind}")
    samples = round(info.window_seconds * info.sample_rate)
    return replace(info, sample_rate=int(rate), window_seconds=samples / rate,
                   name=f"{info.name}, fed {rate} Hz audio as {info.sample_rate} Hz (not resampled)")


def configure(model_cfg: "ModelConfig", spec: str, info: EncoderInfo, finetune: bool = False) -> list[str]:
    """Record a resolved encoder in `model_cfg`: the spec (a directory or file made absolute), kind,
    sha256, size, sample rate, padding behaviour, and the window when the encoder fixes it.
    Returns notes for the user (e.g. that the encoder's window replaced the configured one)."""
    notes = []
    model_cfg.audio_encoder = canonical_spec(spec)
    model_cfg.audio_encoder_kind, model_cfg.audio_encoder_sha256 = info.kind, info.sha256
    model_cfg.audio_dim, model_cfg.sample_rate = info.out_dim, info.sample_rate
    model_cfg.finetune_audio, model_cfg.padding_invariant = finetune, info.padding_invariant
    if info.window_seconds is not None:
        if abs(info.window_seconds - model_cfg.window_seconds) > 1e-6:
            notes.append(f"window: {info.window_seconds:g} s, fixed by the {info.kind} encoder "
                         f"(--max-seconds {model_cfg.window_seconds:g} does not apply)")
        model_cfg.window_seconds = float(info.window_seconds)
    return notes


def build_audio_encoder(spec: str, expected_sha256: str | None = None) -> PretrainedAudioEncoder:
    """The encoder with its pretrained weights loaded (frozen). With `expected_sha256` (what a
    model was trained with) an encoder whose files changed is refused before it is loaded.
    A stack's members are each built so (mos.model.encoders.stack)."""
    infos = [_family(part).resolve(part) for part in member_specs(spec)] if is_stack(spec) else []
    info = combine(spec, infos) if infos else resolve_audio_encoder(spec)
    if expected_sha256 is not None and info.sha256 != expected_sha256:
        raise MosError(f"audio encoder {spec!r}: its files differ from the ones the model was trained with "
                       f"(sha256 {info.sha256[:12]}..., trained with {expected_sha256[:12]}...); install that encoder again")
    if infos:
        members = [_family(part).build(i).freeze(True) for part, i in zip(member_specs(spec), infos)]
        return StackedAudioEncoder(info, members).freeze(True)
    return _family(spec).build(info).freeze(True)


__all__ = ["AISFX", "CONV", "DISTILLMOS", "STACK", "canonical_spec", "is_stack", "EncoderInfo", "fed_unresampled", "PretrainedAudioEncoder", "build_audio_encoder", "configure", "resolve_audio_encoder"]
