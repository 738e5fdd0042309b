"""The one-cycle learning-rate (and AdamW beta1) schedule as a closed form of the step number.

`lr_at(step)` depends only on the step and the run's total steps, so a resumed run sets the
optimiser from its step count: with the same total it continues exactly where it stopped, and
with more epochs it follows the schedule an uninterrupted run of the new length would follow.
Shape as torch's OneCycleLR (cosine): warm up from max_lr/25 to max_lr over the first
`pct_start` of the steps, then anneal to max_lr/25/1e4; beta1 moves the opposite way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _cosine(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


@dataclass(frozen=True)
class OneCycle:
    max_lr: float
    total_steps: int
    pct_start: float = 0.1
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def _phase(self, step: int) -> tuple[bool, float]:
        """(warming up?, fraction of that phase done) at optimiser step `step` (0-based)."""
        last = max(1, self.total_steps - 1)
        t = min(max(step, 0), last) / last
        if t <= self.pct_start and self.pct_start > 0:
            return True, t / self.pct_start
        return False, (t - self.pct_start) / max(1e-12, 1.0 - self.pct_start)

    def lr_at(self, step: int) -> float:
        initial = self.max_lr / self.div_factor
        warm, pct = self._phase(step)
        if warm:
            return _cosine(initial, self.max_lr, pct)
        return _cosine(self.max_lr, initial / self.final_div_factor, pct)

    def momentum_at(self, step: int) -> float:
        warm, pct = self._phase(step)
        if warm:
            return _cosine(self.max_momentum, self.base_momentum, pct)
        return _cosine(self.base_momentum, self.max_momentum, pct)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's lr and beta1 for optimiser step `step`; returns the lr."""
        lr, beta1 = self.lr_at(step), self.momentum_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if "betas" in group:
                group["betas"] = (beta1, group["betas"][1])
        return lr
