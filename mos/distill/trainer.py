"""The student's training: `mos train`'s Trainer, whose loss mixes the human ratings (on the clips
that have them) with the teacher's labels (on every clip), adds rank agreement with the teacher
and, for embedding distillation, how well the student's pooled audio embedding (through a linear
projection) reproduces the teacher's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mos.trainer.feature_cache import FeatureBatch
from mos.trainer.batches import Batch
from mos.trainer.loop import Trainer, batch_frames
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


@dataclass
class TeacherStats:
    """Per-dimension mean and SD of the teacher's embeddings over the training clips: the student
    learns the standardised embedding, so that no dimension dominates by its scale alone."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, embeddings: np.ndarray) -> TeacherStats:
        e = np.asarray(embeddings, dtype=np.float64)
        return cls(e.mean(axis=0), np.maximum(e.std(axis=0), 1e-6))

    def standardise(self, embeddings: np.ndarray) -> np.ndarray:
        return ((np.asarray(embeddings, dtype=np.float64) - self.mean) / self.std).astype(np.float32)


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error to the standardised teacher embeddings [B, D], plus 1 - their mean cosine
    similarity (the direction, whatever the length)."""
    return F.mse_loss(student, teacher) + (1.0 - F.cosine_similarity(student, teacher, dim=1).mean())


class DistillTrainer(Trainer):
    """A Trainer whose training manifest may hold unrated clips (NaN targets) and whose loss is
    `distill_loss`, plus `embedding_weight` x `embedding_loss` when the teacher's embeddings are
    given. `teacher` [n_train, n_targets] holds the teacher's scale-space labels of the training
    manifest's clips, in its order; `teacher_embeddings` [n_train, D] its standardised pooled
    audio embeddings (the student's model then has `embedding_projection` to D)."""

    def __init__(self, *args: Any, teacher: np.ndarray, teacher_weight: float, agree_weight: float,
                 teacher_embeddings: np.ndarray | None = None, embedding_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names, mean, std = self._target_stats
        self.teacher_norm = torch.from_numpy(((teacher - mean) / std).astype(np.float32))
        self.teacher_weight = teacher_weight
        self.agree_weight = agree_weight
        self.embedding_weight = embedding_weight if teacher_embeddings is not None else 0.0
        self.teacher_embeddings = None if teacher_embeddings is None else torch.from_numpy(teacher_embeddings)
        self._pooled: torch.Tensor | None = None

    def forward_batch(self, batch: Batch | FeatureBatch) -> torch.Tensor:
        frames, frame_lengths = batch_frames(self.model, batch)
        if self.embedding_weight > 0:
            self._pooled = self.model.pooled_audio(frames, frame_lengths)
        return self.model.head_outputs(frames, frame_lengths, batch.text, batch.text_lengths)

    def batch_loss(self, out: torch.Tensor, batch: Batch | FeatureBatch) -> torch.Tensor:
        index = batch.index.cpu()
        teacher = self.teacher_norm[index].to(out.device)
        loss = distill_loss(out, batch.targets, teacher, self.cfg, self.teacher_weight, self.agree_weight)
        if self.embedding_weight > 0 and self._pooled is not None and self.teacher_embeddings is not None:
            student = self.model.embedding_projection(self._pooled.float())
            loss = loss + self.embedding_weight * embedding_loss(student, self.teacher_embeddings[index].to(out.device))
            self._pooled = None
        return loss
