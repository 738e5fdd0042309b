"""Closed-form heads on a frozen encoder's pooled embedding: an RBF support vector regressor
("svr") or ridge regression ("ridge"), fitted with scikit-learn (mos.trainer.kernel_fit) and held
here as buffers, so the torch model, its checkpoint and the exported ONNX graph carry them.

One `FittedRegressor` per target maps the pooled embedding [B, D] to the target's normalised
score [B, 1]: the embedding standardised by the training statistics (z = (x - mean) / scale),
then for "svr" sum_i dual_i exp(-gamma ||z - sv_i||^2) + intercept (the squared distance as
||z||^2 - 2 z.sv + ||sv||^2, a MatMul) and for "ridge" z.coef + intercept. The number of support
vectors is known only after the fit: loading a checkpoint gives the buffers the saved shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mos.heads import KERNEL_HEADS, RIDGE, SVR

_RESIZED = ("support", "dual", "coef")


class FittedRegressor(nn.Module):
    """One target's fitted regressor: pooled embedding [B, D] -> normalised score [B, 1]."""

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        if kind not in KERNEL_HEADS:
            raise ValueError(f"fitted head {kind!r}: expected {' or '.join(KERNEL_HEADS)}")
        self.kind = kind
        self.register_buffer("x_mean", torch.zeros(dim))
        self.register_buffer("x_scale", torch.ones(dim))
        self.register_buffer("intercept", torch.zeros(1))
        if kind == SVR:
            self.register_buffer("support", torch.zeros(0, dim))
            self.register_buffer("dual", torch.zeros(0, 1))
            self.register_buffer("gamma", torch.ones(()))
        else:
            self.register_buffer("coef", torch.zeros(dim, 1))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in _RESIZED:  # the fit decides how many support vectors there are
            key = prefix + name
            if name in self._buffers and key in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[key], device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_fit(self, mean: np.ndarray, scale: np.ndarray, intercept: float, *, support: np.ndarray | None = None,
                dual: np.ndarray | None = None, gamma: float | None = None, coef: np.ndarray | None = None) -> None:
        """Take a fitted regressor's standardisation and parameters (float32 buffers)."""
        device = self.x_mean.device

        def t(a: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

        self.x_mean, self.x_scale, self.intercept = t(mean), t(scale), t([intercept])
        if self.kind == SVR:
            assert support is not None and dual is not None and gamma is not None
            self.support, self.dual, self.gamma = t(support), t(dual).reshape(-1, 1), t(gamma)
        else:
            assert coef is not None
            self.coef = t(coef).reshape(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.float() - self.x_mean) / self.x_scale
        if self.kind == RIDGE:
            return z @ self.coef + self.intercept
        sq = (z * z).sum(-1, keepdim=True) - 2.0 * (z @ self.support.t()) + (self.support * self.support).sum(-1)
        return torch.exp(-self.gamma * torch.clamp(sq, min=0.0)) @ self.dual + self.intercept
