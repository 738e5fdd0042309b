"""Pretrained audio encoders behind one contract (mos.model.encoders.base), chosen by a spec:

- a local transformers directory, recognised by its config.json `model_type`: clap (the audio
  tower of ClapModel, 48 kHz); wav2vec2, hubert, wavlm, data2vec-audio (self-supervised speech
  models, 16 kHz, a learned weighting of their hidden layers). The other families (aisfx, AST)
  plug into the same contract and are not here yet.

"conv" (the built-in edge encoder) is not here: MosModel builds it with its log-mel front end.
Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

from mos.errors import MosError
from mos.model.encoders.base import EncoderInfo, PretrainedAudioEncoder, read_model_type

CONV = "conv"


def _family(spec: str):
    """The module that implements `spec` (each has resolve(spec) -> EncoderInfo and build(info))."""
    model_type = read_model_type(Path(spec))
    if model_type == "clap":
        from mos.model.encoders import clap

        return clap
    from mos.model.encoders import ssl

    if model_type in ssl.KINDS:
        return ssl
    raise MosError(f"{spec}: model_type {model_type!r} is not an audio encoder this mos can use "
                   f"(it reads: clap, {', '.join(ssl.KINDS)})")


def resolve_audio_encoder(spec: str) -> EncoderInfo:
    """What `spec` is (kind, rate, window, size, sha256), or a one-line MosError naming the problem."""
    if spec == CONV:
        raise MosError("'conv' is the built-in encoder; it has no pretrained source to resolve")
    return _family(spec).resolve(spec)


def build_audio_encoder(spec: str, expected_sha256: str | None = None) -> PretrainedAudioEncoder:
    """The encoder with its pretrained weights loaded (frozen). With `expected_sha256` (what a
    model was trained with) an encoder whose files changed is refused before it is loaded."""
    info = resolve_audio_encoder(spec)
    if expected_sha256 is not None and info.sha256 != expected_sha256:
        raise MosError(f"audio encoder {spec!r}: its files differ from the ones the model was trained with "
                       f"(sha256 {info.sha256[:12]}..., trained with {expected_sha256[:12]}...); install that encoder again")
    return _family(spec).build(info).freeze(True)


__all__ = ["CONV", "EncoderInfo", "PretrainedAudioEncoder", "build_audio_encoder", "resolve_audio_encoder"]
