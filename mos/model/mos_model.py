"""The MOS model: waveform + lengths (+ caption token features) -> one score per named target."""

from __future__ import annotations

import torch
from torch import nn

from mos.model.audio_encoder import ConvAudioEncoder
from mos.model.config import ModelConfig
from mos.model.frontend import LogMel
from mos.model.fusion import AudioOnlyPooling, CrossAttentionFusion


class MosModel(nn.Module):
    """Front end -> audio encoder -> (cross-attention with text) -> masked pooling -> heads.

    `forward` returns normalised predictions [B, n_targets] (what the losses see);
    `scores` maps them back to each target's scale and clamps to its range.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(cfg)
        self.audio_encoder = ConvAudioEncoder(cfg)
        if cfg.uses_text:
            self.fusion: nn.Module = CrossAttentionFusion(
                self.audio_encoder.out_dim, cfg.text_dim, cfg.hidden, cfg.attention_heads, cfg.dropout
            )
        else:
            self.fusion = AudioOnlyPooling(self.audio_encoder.out_dim, cfg.hidden)
        self.trunk = nn.Sequential(nn.Linear(self.fusion.out_dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout))
        self.heads = nn.ModuleDict({t.name: nn.Linear(cfg.hidden, 1) for t in cfg.targets})
        self.register_buffer("target_mean", torch.tensor([t.mean for t in cfg.targets], dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor([t.std for t in cfg.targets], dtype=torch.float32))
        self.register_buffer("target_low", torch.tensor([t.low for t in cfg.targets], dtype=torch.float32))
        self.register_buffer("target_high", torch.tensor([t.high for t in cfg.targets], dtype=torch.float32))

    def forward(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        feats, frames = self.frontend(waveform, lengths)
        audio, audio_lengths = self.audio_encoder(feats, frames)
        if self.cfg.uses_text:
            if text is None or text_lengths is None:
                raise ValueError("this model needs caption features (text, text_lengths)")
            pooled = self.fusion(audio, audio_lengths, text, text_lengths)
        else:
            pooled = self.fusion(audio, audio_lengths)
        hidden = self.trunk(pooled)
        return torch.cat([self.heads[name](hidden) for name in self.cfg.target_names], dim=-1)

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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
