"""The student's training: `mos train`'s Trainer, whose loss mixes the human ratings (on the clips
that have them) with the teacher's labels (on every clip) and adds rank agreement with the teacher."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mos.trainer.feature_cache import FeatureBatch
from mos.trainer.batches import Batch
from mos.trainer.loop import Trainer
from mos.trainer.losses import rank_agreement_loss, training_loss


def distill_loss(out: torch.Tensor, human: torch.Tensor, teacher: torch.Tensor, cfg: Any, teacher_weight: float,
                 agree_weight: float) -> torch.Tensor:
    """(1 - w) * the run's loss on the rows with human ratings + w * the run's loss on the
    teacher's labels (every row) + agree_weight * soft rank agreement with the teacher; all on
    normalised scores [B, n_targets]; unrated rows hold NaN in `human`."""
    total = out.sum() * 0.0
    rated = torch.isfinite(human).all(dim=1)
    if teacher_weight < 1 and bool(rated.any()):
        total = total + (1 - teacher_weight) * training_loss(out[rated], human[rated], cfg)
    if teacher_weight > 0:
        total = total + teacher_weight * training_loss(out, teacher, cfg)
    if agree_weight > 0:
        agree = sum(rank_agreement_loss(out[:, j], teacher[:, j]) for j in range(out.shape[1]))
        total = total + agree_weight * agree / out.shape[1]
    return total


class DistillTrainer(Trainer):
    """A Trainer whose training manifest may hold unrated clips (NaN targets) and whose loss is
    `distill_loss`. `teacher` [n_train, n_targets] holds the teacher's scale-space labels of the
    training manifest's clips, in its order."""

    def __init__(self, *args: Any, teacher: np.ndarray, teacher_weight: float, agree_weight: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names, mean, std = self._target_stats
        self.teacher_norm = torch.from_numpy(((teacher - mean) / std).astype(np.float32))
        self.teacher_weight = teacher_weight
        self.agree_weight = agree_weight

    def batch_loss(self, out: torch.Tensor, batch: Batch | FeatureBatch) -> torch.Tensor:
        teacher = self.teacher_norm[batch.index.cpu()].to(out.device)
        return distill_loss(out, batch.targets, teacher, self.cfg, self.teacher_weight, self.agree_weight)
