"""Validation during training, scored the way `mos score` scores: each clip cut into windows of
the model's training window (mos.windows), the unclamped window scores averaged weighted by
length (a distribution model's spreads as the windows' mixture), then clamped to each target's
range; and the metrics of those scores, per target and at utterance and system level."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mos.audio import window_samples
from mos.data.manifest import Item
from mos.metrics import compute_metrics, evaluate_levels
from mos.model import MosModel
from mos.runtime.batching import pad_waveforms, plan_batches
from mos.trainer.batches import Batch
from mos.trainer.feature_cache import FeatureBatch
from mos.windows import split_windows, window_mixture


def batch_windows(batch: Batch, window: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Every clip of a batch cut into windows as `mos score` cuts it: (waveforms, lengths, owner)."""
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    wave = batch.waveform.cpu().numpy()
    for i, n in enumerate(batch.lengths.tolist()):
        for piece in split_windows(wave[i, :n], window):
            pieces.append(piece)
            owner.append(i)
    padded, lengths = pad_waveforms(pieces)
    return torch.from_numpy(padded), torch.from_numpy(lengths), owner


def window_scores(model: MosModel, batch: Batch | FeatureBatch, device: torch.device,
                  amp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unclamped scale-space scores of every scoring window in a batch: (scores [n, targets],
    window lengths in samples [n], the manifest position of each window's clip [n], that
    clip's normalised targets [n, targets], and the listener spread [n, targets], zeros unless
    the model predicts distributions)."""
    spread = np.zeros(0, dtype=np.float32)
    if isinstance(batch, FeatureBatch):
        b = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            raw = model.head_outputs(model.audio_encoder.mix(b.feats), b.frame_lengths, b.text, b.text_lengths)
        scores = model.to_scale(model.normalised(raw.float()), clamp=False)
        spread = model.spread(raw.float()) if model.cfg.predicts_spread else torch.zeros_like(scores)
        return (scores.cpu().numpy(), batch.samples.numpy(), batch.index.numpy(), batch.targets.numpy(),
                spread.cpu().numpy())
    window = window_samples(model.cfg.window_seconds, model.cfg.sample_rate)
    waves, lengths, owner = batch_windows(batch, window)
    sel = torch.tensor(owner, dtype=torch.long)
    groups = [list(range(len(owner)))]
    if not model.cfg.padding_invariant:  # such encoders see only windows of equal length together
        groups = plan_batches(lengths.tolist(), len(owner), equal_lengths=True)
    scores = np.zeros((len(owner), len(model.cfg.targets)), dtype=np.float32)
    spread = np.zeros_like(scores)
    for g in groups:
        gi = torch.tensor(g, dtype=torch.long)
        width = int(lengths[gi].max())
        text = None if batch.text is None else batch.text[sel[gi]].to(device)
        text_lengths = None if batch.text_lengths is None else batch.text_lengths[sel[gi]].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            raw = model.outputs(waves[gi, :width].to(device), lengths[gi].to(device), text, text_lengths).float()
        scores[g] = model.to_scale(model.normalised(raw), clamp=False).cpu().numpy()
        if model.cfg.predicts_spread:
            spread[g] = model.spread(raw).cpu().numpy()
    return scores, lengths.numpy(), batch.index[sel].numpy(), batch.targets[sel].numpy(), spread


def clamp_scores(model: MosModel, scores: np.ndarray) -> np.ndarray:
    """Scale-space scores [n, targets] clamped to each target's range (MosModel.clamp), float32."""
    with torch.no_grad():
        clamped = model.clamp(torch.from_numpy(np.asarray(scores, dtype=np.float32)).to(model.target_low.device))
    return clamped.cpu().numpy()


def predict_with_spread(model: MosModel, loader: Any, device: torch.device, amp: bool,
                        clamp: bool = True) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Scale-space predictions and the normalised-space MSE over a loader of whole clips (or of
    every cached window of them), in manifest order, scored as `mos score` scores: each clip cut
    into windows of the model's training window, the UNCLAMPED window scores averaged weighted by
    window length, then clamped (unless `clamp` is False); and the listener spread of each clip
    (its windows' mixture; zeros unless the model predicts distributions)."""
    model.eval()
    parts = []
    with torch.no_grad():
        for batch in loader:
            parts.append(window_scores(model, batch, device, amp))
    scores, weights, owner, targets, spreads = (np.concatenate(x) for x in zip(*parts))
    clips = np.unique(owner)
    std = model.target_std.cpu().numpy()
    mean = model.target_mean.cpu().numpy()
    combined = [window_mixture(scores[owner == i], spreads[owner == i], weights[owner == i]) for i in clips]
    pred = np.stack([m for m, _ in combined]).astype(np.float32)
    if clamp:
        pred = clamp_scores(model, pred)
    spread = np.stack([s for _, s in combined]).astype(np.float32)
    true = np.stack([targets[owner == i][0] for i in clips]) * std + mean
    loss = float(np.mean(((pred - true) / std) ** 2))
    return pred, true, loss, spread


def predict(model: MosModel, loader: Any, device: torch.device, amp: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """predict_with_spread without the spread."""
    return predict_with_spread(model, loader, device, amp)[:3]


def target_metrics(pred: np.ndarray, true: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    return {n: compute_metrics(pred[:, j], true[:, j]).as_dict() for j, n in enumerate(names)}


def level_metrics(pred: np.ndarray, true: np.ndarray, names: list[str], items: list[Item]) -> dict[str, dict[str, dict]]:
    """target -> level ("utterance", and "system" when every clip has one) -> metrics."""
    systems = [it.system for it in items]
    return {n: {k: v.as_dict() for k, v in evaluate_levels(pred[:, j], true[:, j],
                                                           systems if all(systems) else None).items()}
            for j, n in enumerate(names)}


def mean_srcc(metrics: dict[str, dict[str, float]]) -> float:
    return float(np.mean([m["srcc"] for m in metrics.values()]))


def format_epoch(epoch: int | str, loss: float | None, metrics: dict[str, dict[str, float]]) -> str:
    """One console line: an epoch's training loss and its validation metrics per target."""
    head = f"EPOCH {epoch}: " + (f"Loss={loss:.4f}" if loss is not None else "Loss=   -  ")
    parts = [
        f"{n}: SRCC={m['srcc']:.4f} LCC={m['lcc']:.4f} KTAU={m['ktau']:.4f} MSE={m['mse']:.4f}" for n, m in metrics.items()
    ]
    return " | ".join([head, *parts])
