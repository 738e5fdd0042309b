"""The MOS model: waveform + lengths (+ caption token features) -> one score per named target.

Audio: the built-in conv encoder behind its log-mel front end, or a pretrained encoder
(mos.model.encoders) that takes the waveform itself. Then a head: cross-attention fusion with the
caption tokens ("fusion") or pooled embeddings into an MLP ("pooled"), each with one linear output
per target; or one MLP per target on the pooled embeddings ("per-target"), where the targets named
in `audio_only_targets` see the audio embedding alone (the MusicEval baseline's overall head); or
one regressor per target fitted in closed form on the pooled embeddings ("svr", "ridge":
mos.model.kernel_head).
With `distribution_bins` each output is a distribution over the target's range instead of one
number: the score is its mean, and `spread` its standard deviation with the training targets'
smoothing taken out (the listener spread; mos.distribution.Grid.moments, which it equals).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from mos.errors import MosError
from mos.heads import FITTED_SCOPE, KERNEL_HEADS
from mos.model.audio_encoder import ConvAudioEncoder
from mos.model.config import ModelConfig
from mos.model.encoders import STACK, PretrainedAudioEncoder, build_audio_encoder, fed_unresampled
from mos.model.frontend import LogMel
from mos.model.fusion import AudioOnlyPooling, CrossAttentionFusion, PooledEmbeddings
from mos.model.kernel_head import FittedRegressor
from mos.model.masking import masked_mean

BACKBONE_PREFIX = "audio_encoder.backbone."


HEAD_ACTIVATIONS = ("gelu", "relu", "none")
HEAD_OUTPUTS = ("linear", "sigmoid")


def mlp(sizes: list[int], dropout: float, activation: str = "gelu", last_linear: bool = False) -> nn.Sequential:
    """Linear -> GELU (or ReLU, activation "relu") -> Dropout for each consecutive pair of `sizes`; with activation "none"
    Linear layers alone. `last_linear`: the last pair is a bare Linear (an output layer)."""
    if activation not in HEAD_ACTIVATIONS:
        raise MosError(f"head activation {activation!r}: expected {' or '.join(HEAD_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    pairs = list(zip(sizes[:-1], sizes[1:]))
    for i, (a, b) in enumerate(pairs):
        layers.append(nn.Linear(a, b))
        if activation != "none" and not (last_linear and i == len(pairs) - 1):
            layers += [nn.GELU() if activation == "gelu" else nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class MosModel(nn.Module):
    """Audio encoder -> head (fusion or pooled) -> one linear output per target.

    `forward` returns normalised predictions [B, n_targets] (what the losses see); `scores` maps
    them back to each target's scale. `encode_audio` and `head` are the two halves of `forward`
    (the trainer caches a frozen encoder's output and trains the head alone).
    `audio_encoder`: a pretrained encoder already built (else built from cfg.audio_encoder).
    """

    def __init__(self, cfg: ModelConfig, audio_encoder: PretrainedAudioEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.pretrained_audio:
            self.frontend: LogMel | None = None
            encoder = audio_encoder or build_audio_encoder(cfg.audio_encoder, cfg.audio_encoder_sha256)
            # A model trained on audio fed at another rate than the encoder's (encoder_input_rate).
            encoder.info = fed_unresampled(encoder.info, cfg.sample_rate)
            encoder.freeze(not cfg.finetune_audio)
            if encoder.info.kind == STACK and cfg.head == "fusion":
                raise MosError(f"--head fusion attends over frames; a stack of encoders ({cfg.audio_encoder}) "
                               f"gives one pooled embedding: use --head pooled or per-target")
            self.audio_encoder: nn.Module = encoder
            audio_dim = encoder.out_dim
        else:
            self.frontend = LogMel(cfg)
            self.audio_encoder = ConvAudioEncoder(cfg)
            audio_dim = self.audio_encoder.out_dim
        cfg.audio_dim = int(audio_dim)
        unknown = sorted(set(cfg.audio_only_targets) - set(cfg.target_names))
        if unknown or (cfg.audio_only_targets and cfg.head != "per-target"):
            raise MosError(f"audio-only targets {', '.join(cfg.audio_only_targets)}: need --head per-target and "
                           f"names among this model's targets ({', '.join(cfg.target_names)})")
        if cfg.head_output not in HEAD_OUTPUTS or (cfg.head_output != "linear" and cfg.distribution_bins):
            raise MosError(f"head output {cfg.head_output!r}: expected {' or '.join(HEAD_OUTPUTS)} (sigmoid: not with distribution bins)")
        outputs = cfg.distribution_bins or 1  # per target: one score, or one logit per bin
        if cfg.head == "per-target":
            # Each target its own MLP (ending in its output layer) on the pooled embeddings.
            self.fusion: nn.Module = PooledEmbeddings(audio_dim, cfg.text_dim if cfg.uses_text else 0)
            self.trunk = nn.Identity()
            self.heads = nn.ModuleDict({
                name: mlp([self.head_input_dim(name), *cfg.head_layers, outputs], cfg.dropout, cfg.head_activation, True)
                for name in cfg.target_names})
        elif cfg.head == "pooled":
            self.fusion = PooledEmbeddings(audio_dim, cfg.text_dim if cfg.uses_text else 0)
            sizes = [self.fusion.out_dim, *cfg.head_layers]
        elif cfg.head in KERNEL_HEADS:
            # Fitted in closed form on the pooled embeddings (mos.trainer.kernel_fit), one per target.
            if cfg.distribution_bins:
                raise MosError(f"head {cfg.head}: predicts one score per target, not a distribution")
            self.fusion = PooledEmbeddings(audio_dim, cfg.text_dim if cfg.uses_text else 0)
            self.trunk = nn.Identity()
            self.heads = nn.ModuleDict({t.name: nn.Sequential(OrderedDict(
                {FITTED_SCOPE: FittedRegressor(cfg.head, self.fusion.out_dim)})) for t in cfg.targets})
        elif cfg.head == "fusion":
            if cfg.uses_text:
                self.fusion = CrossAttentionFusion(audio_dim, cfg.text_dim, cfg.hidden, cfg.attention_heads, cfg.dropout)
            else:
                self.fusion = AudioOnlyPooling(audio_dim, cfg.hidden)
            sizes = [self.fusion.out_dim, cfg.hidden]
        else:
            raise MosError(f"head {cfg.head!r}: expected 'fusion', 'pooled', 'per-target', 'svr' or 'ridge'")
        if cfg.head not in ("per-target", *KERNEL_HEADS):
            self.trunk = mlp(sizes, cfg.dropout, cfg.head_activation if cfg.head == "pooled" else "gelu")
            self.heads = nn.ModuleDict({t.name: nn.Linear(sizes[-1], outputs) for t in cfg.targets})
        if cfg.distribution_bins:
            try:
                grids = [cfg.grid(t) for t in cfg.targets]
            except ValueError as e:
                raise MosError(f"--distribution-width: {e}") from None
            # The value each probability stands for; the constant smoothing the spread takes out
            # ("gaussian": its width, else 0); the edge-exact kernel's kappa (not saved: from cfg).
            self.register_buffer("bin_centers", torch.tensor(np.stack([g.values for g in grids]), dtype=torch.float32))
            self.register_buffer("bin_width", torch.tensor([np.sqrt(g.offset) for g in grids], dtype=torch.float32))
            self.register_buffer("bin_kappa", torch.tensor([g.kappa for g in grids], dtype=torch.float32),
                                 persistent=False)
        if cfg.distill_embedding_dim:
            self.embedding_projection = nn.Linear(int(audio_dim), int(cfg.distill_embedding_dim))
        self.register_buffer("target_mean", torch.tensor([t.mean for t in cfg.targets], dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor([t.std for t in cfg.targets], dtype=torch.float32))
        self.register_buffer("target_low", torch.tensor([t.low for t in cfg.targets], dtype=torch.float32))
        self.register_buffer("target_high", torch.tensor([t.high for t in cfg.targets], dtype=torch.float32))

    def head_input_dim(self, target: str) -> int:
        """What a per-target head sees: the audio embedding, with the caption embedding unless the
        target is audio-only (or the model has no text)."""
        if target in self.cfg.audio_only_targets or not self.cfg.uses_text:
            return self.cfg.audio_dim
        return self.cfg.audio_dim + self.cfg.text_dim

    def fitted_head(self, target: str) -> FittedRegressor:
        """An svr/ridge model's regressor for `target` (mos.trainer.kernel_fit fits it)."""
        return getattr(self.heads[target], FITTED_SCOPE)

    # -- the two halves of forward ---------------------------------------------------------------
    def encode_audio(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waveform [B, N] + lengths [B] -> frames [B, T, D] + frame lengths [B]."""
        if self.frontend is not None:
            feats, frames = self.frontend(waveform, lengths)
            return self.audio_encoder(feats, frames)
        return self.audio_encoder(waveform, lengths)

    def pooled_audio(self, frames: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """The pooled audio embedding [B, D]: the masked mean of the encoder's frames. It does not
        depend on the caption; bundles output it (`embedding`) and `mos distill` teaches with it."""
        return masked_mean(frames, frame_lengths)

    def head(
        self,
        audio: torch.Tensor,
        audio_lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Audio frames (+ caption token features) -> normalised predictions [B, n_targets]."""
        return self.normalised(self.head_outputs(audio, audio_lengths, text, text_lengths))

    def head_outputs(
        self,
        audio: torch.Tensor,
        audio_lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The heads' raw outputs [B, n_targets, K]: K = 1 normalised score, or K = bins logits."""
        if self.cfg.uses_text:
            if text is None or text_lengths is None:
                raise ValueError("this model needs caption features (text, text_lengths)")
            pooled = self.fusion(audio, audio_lengths, text, text_lengths)
        else:
            pooled = self.fusion(audio, audio_lengths)
        if self.cfg.head == "per-target":
            audio_only = pooled[:, : self.cfg.audio_dim]
            return torch.stack([self.heads[name](audio_only if name in self.cfg.audio_only_targets else pooled)
                                for name in self.cfg.target_names], dim=1)
        hidden = self.trunk(pooled)
        return torch.stack([self.heads[name](hidden) for name in self.cfg.target_names], dim=1)

    def normalised(self, outputs: torch.Tensor) -> torch.Tensor:
        """Raw head outputs [B, T, K] -> normalised predictions [B, T] (a distribution's mean,
        normalised as the targets are; a sigmoid head's output squashed onto the range first)."""
        if self.cfg.head_output == "sigmoid":
            value = self.target_low + (self.target_high - self.target_low) * torch.sigmoid(outputs[..., 0])
            return (value - self.target_mean) / self.target_std
        if not self.cfg.distribution_bins:
            return outputs[..., 0]
        return (self.distribution_mean(outputs) - self.target_mean) / self.target_std

    def distribution_mean(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, bins] -> the distributions' means on each target's scale [B, T]."""
        return (torch.softmax(logits.float(), dim=-1) * self.bin_centers).sum(-1)

    def spread(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, bins] -> the listener spread on each target's scale [B, T]: the
        distribution's standard deviation with the targets' smoothing taken out, as
        mos.distribution.Grid.moments does it."""
        probs = torch.softmax(logits.float(), dim=-1)
        mean = (probs * self.bin_centers).sum(-1, keepdim=True)
        var = (probs * (self.bin_centers - mean) ** 2).sum(-1)
        m = mean[..., 0]
        edge = self.bin_kappa * (m - self.target_low) * (self.target_high - m)
        return torch.sqrt(torch.clamp((var - edge - self.bin_width ** 2) / (1.0 - self.bin_kappa), min=0.0))

    def outputs(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Waveform (+ caption features) -> the heads' raw outputs [B, n_targets, K]."""
        audio, audio_lengths = self.encode_audio(waveform, lengths)
        return self.head_outputs(audio, audio_lengths, text, text_lengths)

    def forward(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.normalised(self.outputs(waveform, lengths, text, text_lengths))

    # -- scales ----------------------------------------------------------------------------------
    def to_scale(self, normalised: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Normalised predictions -> target scale, clamped to each target's range unless `clamp`
        is False (windows of a long clip are averaged first and clamped after)."""
        raw = normalised * self.target_std + self.target_mean
        return self.clamp(raw) if clamp else raw

    def clamp(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_targets] on the target scale, clamped to each target's range."""
        return torch.maximum(torch.minimum(scores, self.target_high), self.target_low)

    def scores(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Scores [B, n_targets] on each target's scale (clamped to its range unless `clamp` is False)."""
        return self.to_scale(self.forward(waveform, lengths, text, text_lengths), clamp)

    def scores_and_spread(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
        clamp: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A distribution model's (scores, listener spread), each [B, n_targets] on the targets' scale."""
        logits = self.outputs(waveform, lengths, text, text_lengths)
        return self.to_scale(self.normalised(logits), clamp), self.spread(logits)

    # -- checkpoints -----------------------------------------------------------------------------
    @property
    def saves_backbone(self) -> bool:
        """A frozen pretrained backbone is not saved: it is loaded again from its (pinned) source."""
        return not self.cfg.pretrained_audio or self.cfg.finetune_audio

    @property
    def backbone_prefixes(self) -> tuple[str, ...]:
        """Where the pretrained weights sit in the state dict (a stack's: under each member)."""
        prefixes = getattr(self.audio_encoder, "backbone_prefixes", None)
        return tuple("audio_encoder." + p for p in prefixes()) if prefixes else (BACKBONE_PREFIX,)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The state dict a checkpoint holds (without a frozen pretrained backbone)."""
        state = self.state_dict()
        if self.saves_backbone:
            return state
        return {k: v for k, v in state.items() if not k.startswith(self.backbone_prefixes)}

    def load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        """Load what `checkpoint_state` wrote; anything else missing or unexpected is an error."""
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if self.saves_backbone or not k.startswith(self.backbone_prefixes)]
        if missing or result.unexpected_keys:
            raise MosError(f"checkpoint does not fit this model: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def exported_parameters(model: MosModel) -> int:
    """The trainable parameters the exported model keeps: a distilled student's projection onto the
    teacher's embedding is used in training only."""
    projection = getattr(model, "embedding_projection", None)
    return count_parameters(model) - (count_parameters(projection) if projection is not None else 0)
