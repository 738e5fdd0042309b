"""The model and optimiser a run trains: the model's config from the training data and the
chosen encoder, the front end's feature statistics, and the optimiser's parameter groups."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mos.data.manifest import Manifest
from mos.errors import MosError
from mos.model import ModelConfig, MosModel, TargetSpec
from mos.model.encoders import EncoderInfo, configure
from mos.trainer.batches import ClipDataset
from mos.trainer.config import TrainConfig

SGD_MOMENTUM = 0.9


def feature_statistics(model: MosModel, ds: ClipDataset, max_clips: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin mean/std of the training log-mels (valid frames only)."""
    total = torch.zeros(model.cfg.n_mels, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    with torch.no_grad():
        for i in range(min(len(ds), max_clips)):
            wav = torch.from_numpy(ds.audio(i)).unsqueeze(0)
            feats, frames = model.frontend.log_mel(wav, torch.tensor([wav.shape[1]]))
            f = feats[0, :, : int(frames[0])].double()
            total += f.sum(1)
            total_sq += (f * f).sum(1)
            count += f.shape[1]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp(min=1e-6).sqrt()
    return mean.float().unsqueeze(1), std.float().unsqueeze(1)


def build_model_config(cfg: TrainConfig, train: Manifest, encoder: EncoderInfo | None = None,
                       note: Any = None) -> ModelConfig:
    """The model a run trains: targets from the training data (normalised by their training mean
    and std, or with --target-scale raw by mean 0 and std 1: the heads then learn the scores
    themselves); rate, window and encoder fields from the pretrained `encoder` when there is one
    (a fixed encoder window overrides --max-seconds: `note` is told). The default conv model
    runs at 16 kHz."""
    targets = []
    for t in train.targets:
        values = np.array([it.targets[t.name] for it in train.items], dtype=np.float64)
        values = values[np.isfinite(values)]  # unrated clips (NaN, `mos distill`) do not count
        if cfg.target_scale == "raw":
            mean, std = 0.0, 1.0
        elif values.size == 0:  # no rated training clip (a student taught by its teacher alone): the range
            mean, std = (t.low + t.high) / 2, (t.high - t.low) / 4 or 1.0
        else:
            mean, std = float(values.mean()), float(values.std()) or 1.0
        targets.append(TargetSpec(t.name, float(t.low), float(t.high), mean, std))
    model_cfg = ModelConfig(sample_rate=16000, text_encoder=cfg.text_encoder, max_text_tokens=cfg.max_text_tokens,
                            targets=targets,
                            window_seconds=float(cfg.max_seconds), head=cfg.model_head,
                            head_layers=tuple(int(n) for n in cfg.head_layers),
                            head_activation=cfg.head_activation, dropout=cfg.dropout,
                            audio_only_targets=tuple(cfg.audio_only_targets),
                            distribution_bins=cfg.distribution_bins, distribution_width=cfg.distribution_width)
    unknown = [t for t in cfg.audio_only_targets if t not in train.target_names]
    if unknown:
        raise MosError(f"--audio-only-targets {','.join(unknown)}: {train.source} has no such target "
                       f"(its targets: {', '.join(train.target_names)})")
    if encoder is not None:
        for line in configure(model_cfg, cfg.audio_encoder, encoder, cfg.finetune_audio):
            if note is not None:
                note(line)
    return model_cfg


def param_groups(model: MosModel, cfg: TrainConfig) -> tuple[list[dict[str, Any]], list[float]]:
    """Optimiser groups: everything trainable at --lr; a fine-tuned pretrained backbone at --encoder-lr."""
    backbone: list[torch.nn.Parameter] = []
    if model.cfg.pretrained_audio and model.cfg.finetune_audio:
        backbone = [p for p in model.audio_encoder.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups, lrs = [{"params": rest, "lr": cfg.lr}], [cfg.lr]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.encoder_lr})
        lrs.append(cfg.encoder_lr)
    return groups, lrs


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum 0.9 (the MusicEval baseline's); both with cfg.weight_decay,
    each parameter group at its own rate."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=SGD_MOMENTUM, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
