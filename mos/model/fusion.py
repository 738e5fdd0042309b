"""Fusion: audio frames attend to caption tokens (masked cross-attention), then masked pooling."""

from __future__ import annotations

import torch
from torch import nn

from mos.model.masking import length_mask, masked_mean


class CrossAttentionFusion(nn.Module):
    """(audio [B, T, D], audio_lengths, text [B, S, E], text_lengths) -> pooled [B, 3D].

    Output = [pooled audio-after-attention, pooled projected text, their product], every pool a
    masked mean, the attention a key-padding-masked scaled dot product.
    """

    def __init__(self, audio_dim: int, text_dim: int, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.hidden = hidden
        self.audio_in = nn.Linear(audio_dim, hidden)
        self.text_in = nn.Linear(text_dim, hidden)
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * hidden, hidden))
        self.norm2 = nn.LayerNorm(hidden)
        self.out_dim = 3 * hidden

    def forward(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, text: torch.Tensor, text_lengths: torch.Tensor
    ) -> torch.Tensor:
        b, t, _ = audio.shape
        s = text.shape[1]
        h, d = self.heads, self.hidden // self.heads
        a = self.audio_in(audio)
        x = self.text_in(text)
        q = self.q(a).reshape(b, t, h, d).transpose(1, 2)
        k, v = self.kv(x).reshape(b, s, 2, h, d).permute(2, 0, 3, 1, 4)
        key_mask = length_mask(text_lengths, s)[:, None, None, :]
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        att = att.transpose(1, 2).reshape(b, t, self.hidden)
        a = self.norm1(a + self.out(att))
        a = self.norm2(a + self.ffn(a))
        pooled_audio = masked_mean(a, audio_lengths)
        pooled_text = masked_mean(x, text_lengths)
        return torch.cat([pooled_audio, pooled_text, pooled_audio * pooled_text], dim=-1)


class AudioOnlyPooling(nn.Module):
    """For audio-only models: projection and masked mean pooling."""

    def __init__(self, audio_dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(audio_dim, hidden)
        self.out_dim = hidden

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        return masked_mean(torch.nn.functional.gelu(self.proj(audio)), audio_lengths)


class PooledEmbeddings(nn.Module):
    """The pooled head's input: the masked-mean audio embedding, concatenated with the masked-mean
    caption embedding when the model uses text ([B, audio_dim + text_dim])."""

    def __init__(self, audio_dim: int, text_dim: int = 0) -> None:
        super().__init__()
        self.out_dim = audio_dim + text_dim

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor,
                text: torch.Tensor | None = None, text_lengths: torch.Tensor | None = None) -> torch.Tensor:
        pooled = masked_mean(audio, audio_lengths)
        if text is None or text_lengths is None:
            return pooled
        return torch.cat([pooled, masked_mean(text, text_lengths)], dim=-1)
