"""The learning-rate schedule: torch's OneCycleLR, built for a run's total optimiser steps and
advanced to the steps already taken; or none at all (`constant`: every parameter group keeps its
own learning rate throughout, so a resume has nothing to restore).

Rebuilding it from the step count (instead of loading a saved scheduler state) is what makes
resume honest: with the same total a resumed run continues exactly where it stopped, and with
more epochs it follows the schedule an uninterrupted run of the new length would follow.
"""

from __future__ import annotations

import warnings

import torch

PCT_START = 0.1


def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float | list[float], total_steps: int,
              steps_done: int = 0) -> torch.optim.lr_scheduler.OneCycleLR:
    """OneCycleLR over `total_steps` (`max_lr`: one per parameter group, or one for all), stepped `steps_done` times: the optimiser's lr and beta1
    are then those of its next step. Call `advance` after each optimiser step."""
    total = max(2, total_steps)
    # torch divides by the warm-up's length in steps, pct_start * total - 1: it must stay above 0
    # (a run of 10 steps or fewer would otherwise end in ZeroDivisionError).
    pct = max(PCT_START, 1.5 / total)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=pct)
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps_done):
            advance(scheduler)
    return scheduler


def make_schedule(name: str, optimizer: torch.optim.Optimizer, max_lr: float | list[float], total_steps: int,
                  steps_done: int = 0) -> torch.optim.lr_scheduler.OneCycleLR | None:
    """"one-cycle": `one_cycle(...)`; "constant": None (the optimiser's group rates stay as built)."""
    if name == "constant":
        return None
    if name != "one-cycle":
        raise ValueError(f"schedule {name!r}: expected one-cycle or constant")
    return one_cycle(optimizer, max_lr, total_steps, steps_done)


def advance(scheduler: torch.optim.lr_scheduler.OneCycleLR | None) -> None:
    """One step along the schedule; past its end the last learning rate is kept (None: constant)."""
    if scheduler is not None and scheduler.last_epoch + 1 < scheduler.total_steps:
        scheduler.step()
