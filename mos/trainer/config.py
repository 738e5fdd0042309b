"""Training configuration: one dataclass, loadable from a JSON/TOML file and overridable by flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mos.errors import MosError
from mos.heads import KERNEL_HEADS


def parse_toml(text: str) -> dict[str, Any]:
    """TOML text as a dict (tomllib, or tomli before Python 3.11); ValueError when malformed."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


@dataclass
class TrainConfig:
    """What `mos train` does. `data=None` means the built-in demo set."""

    data: str | None = None
    demo_dir: str = "data/demo"  # where the built-in demo set is generated when data is None
    name: str = "demo"
    runs_dir: str = "runs"
    columns: str | None = None  # column mapping for a generic CSV/JSONL (see mos.data.table)
    epochs: int = 30
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 1e-3  # the one-cycle schedule's peak, or the constant rate
    weight_decay: float = 1e-2
    optimizer: str = "adamw"  # "adamw", or "sgd" (momentum 0.9, the MusicEval baseline's)
    schedule: str = "one-cycle"  # "one-cycle", or "constant" (--lr / --encoder-lr throughout)
    patience: int = 6
    select_by: str = "srcc"  # early stopping and the best checkpoint: "srcc" (mean validation SRCC) or "loss"
    # The validation loss from clip scores clamped to each target's range (as `mos score` gives
    # them), or unclamped (False: the model's outputs as they are, as the MusicEval baseline's).
    val_loss_clamp: bool = True
    grad_clip: float = 5.0  # the gradients' global norm is clipped to this before each step (0: never)
    seed: int = 0
    loss: str = "mse"  # the pointwise loss: "mse" ((clipped) MSE) or "l1" (mean absolute error)
    mse_weight: float = 1.0  # weight of the pointwise loss, MSE or L1
    # How the per-target losses combine: "mean" over the targets, or their "sum" (the MusicEval
    # baseline's two backward calls, one per head: twice the gradient of the mean with 2 targets).
    loss_reduction: str = "mean"
    # What the heads learn: "zscore" (each target standardised by its training mean and std) or
    # "raw" (the scores on the rating scale themselves, as the MusicEval baseline). Either way the
    # model, the bundle and `mos score` give scores on the rating scale.
    target_scale: str = "zscore"
    rank_weight: float = 0.5
    corr_weight: float = 0.5
    clip_tau: float = 0.0  # > 0: clipped MSE (errors below tau, in normalised units, cost nothing)
    rank_margin: float = 0.1
    listnet_weight: float = 0.0  # ListNet top-1 (listwise ranking over the batch)
    gain_db: float = 0.0  # augmentation: random gain of up to +-gain_db dB on training clips
    max_seconds: float = 10.0  # training window: random crop of longer clips; also the scoring window
    val_fraction: float = 0.2  # used when the data has no validation split
    group_by: str | None = None  # split (and fold) by this column's value instead of by clip
    val_data: str | None = None  # an explicit validation file (or tree)
    folds: int = 0  # >= 2: K-fold cross-validation instead of one run
    repeats: int = 1  # with folds: the cross-validation R times, other fold assignments (mos.trainer.cv_repeats)
    # Per-listener standardisation and screening of the TRAINING ratings (mos.data.listeners):
    # "off", "on" (an error without listener ids) or "auto" (on when the data has listener ids).
    listener_norm: str = "off"
    listener_threshold: float = 0.2  # drop listeners correlating below this with the others
    text_encoder: str = "minilm"
    max_text_tokens: int = 64  # captions are truncated to this many tokens (the MusicEval baseline's CLAP: 77)
    # "conv" (the edge encoder, trained from scratch), "aisfx", a local transformers directory
    # (CLAP, AST, wav2vec2/HuBERT/WavLM/data2vec-audio) or a checkpoint file: see mos.model.encoders.
    audio_encoder: str = "conv"
    finetune_audio: bool = False  # train a pretrained audio encoder too (frozen by default)
    # Feed the pretrained encoder audio at this rate as if it were at its own, without resampling
    # (None: resample to the encoder's rate). Only to reproduce the MusicEval baseline, which feeds
    # 16 kHz audio to 48 kHz CLAP (recipe musiceval-baseline-exact).
    encoder_input_rate: int | None = None
    encoder_lr: float = 1e-5  # peak learning rate of a fine-tuned pretrained encoder
    # How a fine-tuned pretrained encoder runs while it trains: "train" (its dropout and other
    # training-time behaviour on; BatchNorm statistics always kept) or "eval" (as at inference:
    # the MusicEval baseline's laion_clap calls put CLAP in eval mode).
    encoder_mode: str = "train"
    # "fusion" (frames attend to caption tokens), "pooled" (embeddings into an MLP), or "auto":
    # pooled with a pretrained audio encoder, fusion with conv (the better of the two for each in
    # the MUSHRA cross-validation, benchmarks/README.md).
    head: str = "auto"
    # "per-target": one pooled MLP per target; those in audio_only_targets see the audio alone.
    # "svr" / "ridge": one RBF support vector or ridge regressor per target, fitted once (no epochs)
    # on a frozen pretrained encoder's pooled embeddings (mos.trainer.kernel_fit).
    head_layers: list[int] = field(default_factory=lambda: [256, 64])  # the pooled/per-target heads' hidden sizes
    head_activation: str = "gelu"  # between those layers: "gelu" or "relu" (+ dropout), or "none" (linear layers)
    dropout: float = 0.1  # in the conv encoder, the fusion and the heads while training
    audio_only_targets: list[str] = field(default_factory=list)
    # > 0: distribution heads over this many values per target, trained with KL divergence against
    # smoothed listener ratings (weight distribution_weight) beside the losses on their mean;
    # scores then come with the listener spread (mos.distribution).
    distribution_bins: int = 0
    distribution_width: float = 0.0  # smoothing mid-scale on the target's scale (0: the narrowest)
    distribution_weight: float = 1.0
    # Where a frozen encoder's features are cached (None: $MOS_CACHE_DIR/features or
    # ~/.cache/mos/features; "none": no cache, the encoder runs on every batch).
    feature_cache: str | None = None
    device: str = "auto"
    amp: bool = True  # mixed precision (bf16) on CUDA only
    num_workers: int = 0
    cache_audio: bool = True  # keep decoded training audio in memory when it fits (< cache_limit_mb)
    cache_limit_mb: int = 2048
    resume: bool = False
    overwrite: bool = False  # replace an existing run folder of the same name

    def check(self) -> None:
        """MosError for values no run can use."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "accumulate": self.accumulate,
                    "patience": self.patience}
        for name, value in positive.items():
            if value < 1:
                raise MosError(f"--{name.replace('_', '-')} {value}: must be at least 1")
        if not self.max_seconds > 0:
            raise MosError(f"--max-seconds {self.max_seconds:g}: must be positive (it is the training and scoring window)")
        if not 0 < self.val_fraction < 1:
            raise MosError(f"--val-fraction {self.val_fraction:g}: must lie between 0 and 1")
        if self.folds == 1 or self.folds < 0:
            raise MosError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        if self.repeats < 1:
            raise MosError(f"--repeats {self.repeats}: must be at least 1")
        if self.repeats > 1 and not self.folds:
            raise MosError(f"--repeats {self.repeats} repeats a cross-validation: it needs --folds K")
        if self.folds and self.val_data:
            raise MosError("--folds and --val-data exclude each other: cross-validation makes its own held-out folds")
        choices = {"loss": ("mse", "l1"), "optimizer": ("adamw", "sgd"), "schedule": ("one-cycle", "constant"),
                   "select_by": ("srcc", "loss"), "listener_norm": ("off", "on", "auto"),
                   "loss_reduction": ("mean", "sum"), "target_scale": ("zscore", "raw"),
                   "encoder_mode": ("train", "eval")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise MosError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected {' or '.join(allowed)}")
        if not -1.0 <= self.listener_threshold <= 1.0:
            raise MosError(f"--listener-threshold {self.listener_threshold:g}: a correlation, between -1 and 1")
        if self.clip_tau > 0 and self.loss != "mse":
            raise MosError(f"--clip-tau {self.clip_tau:g}: clips the MSE, but --loss is {self.loss}")
        weights = {"mse_weight": self.mse_weight, "rank_weight": self.rank_weight, "corr_weight": self.corr_weight,
                   "listnet_weight": self.listnet_weight}
        for name, value in weights.items():
            if value < 0:
                raise MosError(f"--{name.replace('_', '-')} {value:g}: must not be negative")
        if self.lr < 0:
            raise MosError(f"--lr {self.lr:g}: must not be negative")
        if not self.grad_clip >= 0:
            raise MosError(f"--grad-clip {self.grad_clip:g}: must not be negative (0: no clipping)")
        if self.max_text_tokens < 1:
            raise MosError(f"--max-text-tokens {self.max_text_tokens}: must be at least 1")
        if self.head not in ("auto", "fusion", "pooled", "per-target", *KERNEL_HEADS):
            raise MosError(f"--head {self.head}: expected fusion, pooled, per-target, svr, ridge or auto")
        if self.head in KERNEL_HEADS:
            self._check_fitted_head()
        if not 0 <= self.dropout < 1:
            raise MosError(f"--dropout {self.dropout:g}: a probability, at least 0 and below 1")
        if self.head_activation not in ("gelu", "relu", "none"):
            raise MosError(f"--head-activation {self.head_activation}: expected gelu, relu or none")
        if self.audio_only_targets and self.head != "per-target":
            raise MosError(f"--audio-only-targets {','.join(self.audio_only_targets)}: needs --head per-target")
        if not self.head_layers or any(int(n) < 1 for n in self.head_layers):
            raise MosError(f"--head-layers {','.join(map(str, self.head_layers))}: expected positive sizes, e.g. 256,64")
        if self.distribution_bins < 0 or self.distribution_bins == 1:
            raise MosError(f"--distribution {self.distribution_bins}: needs at least 2 bins (e.g. 20), or 0 for none")
        if self.distribution_width < 0 or self.distribution_weight < 0:
            raise MosError("--distribution-width and --distribution-weight must not be negative")
        if self.encoder_input_rate is not None and (self.audio_encoder == "conv" or self.encoder_input_rate < 1):
            raise MosError(f"encoder_input_rate {self.encoder_input_rate}: needs a pretrained --audio-encoder and a positive rate")
        if not self.encoder_lr > 0:
            raise MosError(f"--encoder-lr {self.encoder_lr:g}: must be positive")
        if self.finetune_audio and self.audio_encoder == "conv":
            raise MosError("--finetune-audio: the conv encoder always trains; it applies to a pretrained --audio-encoder")
        from mos.model.encoders.stack import is_stack

        if is_stack(self.audio_encoder) and (self.finetune_audio or self.head == "fusion"):
            option = "--finetune-audio" if self.finetune_audio else "--head fusion"
            raise MosError(f"{option}: not with a stack of encoders ({self.audio_encoder}); a stack is frozen "
                           f"and gives one pooled embedding (use --head pooled or per-target)")
        if self.caches_features and self.gain_db > 0:
            raise MosError("--gain-db changes the audio, but a frozen encoder's features are cached per clip: "
                           "use --finetune-audio, or --feature-cache none (the encoder then runs on every batch)")
        if self.resume and self.overwrite:
            raise MosError("--resume and --overwrite exclude each other")

    def _check_fitted_head(self) -> None:
        """--head svr/ridge: fitted once on a frozen pretrained encoder's pooled embeddings."""
        if self.audio_encoder == "conv":
            raise MosError(f"--head {self.head}: fits on a frozen pretrained encoder's embeddings; "
                           "choose --audio-encoder (aisfx, or a CLAP/AST/wav2vec2-family directory), not conv")
        if self.finetune_audio:
            raise MosError(f"--head {self.head}: fits on a frozen encoder's embeddings; drop --finetune-audio")
        if self.distribution_bins:
            raise MosError(f"--head {self.head}: predicts one score per target; --distribution needs a trained "
                           "head (pooled, per-target or fusion)")
        if self.audio_only_targets:
            raise MosError(f"--audio-only-targets: needs --head per-target, not {self.head}")

    @property
    def model_head(self) -> str:
        """The head the model gets: --head, or for "auto" pooled with a pretrained audio encoder
        and fusion with conv."""
        if self.head != "auto":
            return self.head
        return "fusion" if self.audio_encoder == "conv" else "pooled"

    @property
    def caches_features(self) -> bool:
        """A frozen pretrained encoder whose features are computed once and cached."""
        return self.audio_encoder != "conv" and not self.finetune_audio and self.feature_cache != "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_file(cls, path: Path) -> "TrainConfig":
        return cls(**cls.read_file(path))

    @classmethod
    def read_file(cls, path: Path) -> dict[str, Any]:
        """The settings a JSON/TOML config file gives (known TrainConfig fields only)."""
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".toml":
                raw = parse_toml(text)
            else:
                raw = json.loads(text)
        except FileNotFoundError:
            raise MosError(f"{path}: config file not found") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise MosError(f"{path}: not a valid config file: {exc}") from None
        cls.check_keys(raw, str(path))
        return raw

    @classmethod
    def check_keys(cls, raw: dict[str, Any], source: str) -> None:
        """A one-line MosError naming `source` when `raw` has keys that are not TrainConfig fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise MosError(f"{source}: unknown config key(s): {', '.join(unknown)}")

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig(**d)
