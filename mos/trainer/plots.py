"""Run plots as PNG: training curves per epoch, and predicted vs true scatter per target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, Any]], target_names: list[str], path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    train_epochs = [h["epoch"] for h in history if h.get("train_loss") is not None]
    axes[0].plot(train_epochs, [h["train_loss"] for h in history if h.get("train_loss") is not None], "o-", label="train loss")
    axes[0].plot(epochs, [h["val_loss"] for h in history], "s-", label="validation loss")
    axes[0].set_xlabel("epoch")
    axes[0].set_title("loss")
    axes[0].legend()
    for name in target_names:
        axes[1].plot(epochs, [h["val"][name]["srcc"] for h in history], "o-", label=f"{name} SRCC")
        axes[1].plot(epochs, [h["val"][name]["lcc"] for h in history], "--", label=f"{name} LCC")
    axes[1].set_xlabel("epoch (0 = untrained)")
    axes[1].set_title("validation correlation")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_scatter(
    pred: np.ndarray, true: np.ndarray, target_names: list[str], ranges: list[tuple[float, float]], path: Path
) -> None:
    plt = _pyplot()
    n = len(target_names)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.2), squeeze=False)
    for j, name in enumerate(target_names):
        ax = axes[0, j]
        lo, hi = ranges[j]
        ax.scatter(true[:, j], pred[:, j], s=10, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(f"{name} (validation, best checkpoint)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
