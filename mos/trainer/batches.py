"""Manifest -> batches: decoded audio (the runtime's own decode/resample), cached caption
features, normalised targets, padded into (waveform, lengths, text, text_lengths, targets).

Training clips get a random crop and gain from the dataset's own generator; in data-loader
workers each worker reseeds it from the seed the loader gives that worker (`seed_worker`), which
differs per worker and per epoch, so no two workers repeat each other's crops and gains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from mos.audio import audio_duration, read_audio
from mos.data.manifest import Manifest
from mos.runtime.batching import pad_token_features


@dataclass
class Batch:
    waveform: torch.Tensor  # [B, N] float32, zero past each length
    lengths: torch.Tensor  # [B] int64
    text: torch.Tensor | None  # [B, S, D]
    text_lengths: torch.Tensor | None  # [B]
    targets: torch.Tensor  # [B, n_targets], normalised
    index: torch.Tensor  # [B] positions in the manifest

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(*(move(getattr(self, f)) for f in ("waveform", "lengths", "text", "text_lengths", "targets", "index")))


class ClipDataset(Dataset):
    """Items of a manifest with their audio, caption features and normalised targets."""

    def __init__(
        self,
        manifest: Manifest,
        sample_rate: int,
        target_names: list[str],
        target_mean: np.ndarray,
        target_std: np.ndarray,
        caption_features: dict[str, torch.Tensor] | None,
        max_samples: int | None = None,
        random_crop: bool = False,
        seed: int = 0,
        cache_limit_mb: int = 0,
        gain_db: float = 0.0,
    ) -> None:
        self.items = manifest.items
        self.sample_rate = sample_rate
        self.captions = caption_features
        self.max_samples = max_samples
        self.random_crop = random_crop
        self.gain_db = gain_db  # training augmentation: random gain in [-gain_db, +gain_db] dB
        self.rng = np.random.default_rng(seed)
        raw = np.array([[it.targets[n] for n in target_names] for it in self.items], dtype=np.float32)
        self.targets = (raw - target_mean) / target_std
        self._cache: dict[int, np.ndarray] | None = None
        if cache_limit_mb > 0:
            total = sum(audio_duration(it.path) for it in self.items) * sample_rate * 4 / 2**20
            if total <= cache_limit_mb:
                self._cache = {}

    def __len__(self) -> int:
        return len(self.items)

    def reseed(self, seed: int) -> None:
        """A fresh augmentation generator (each data-loader worker calls this with its own seed)."""
        self.rng = np.random.default_rng(seed)

    def audio(self, i: int) -> np.ndarray:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        wav = read_audio(self.items[i].path, self.sample_rate)
        if self._cache is not None:
            self._cache[i] = wav
        return wav

    def __getitem__(self, i: int) -> tuple[np.ndarray, torch.Tensor | None, np.ndarray, int]:
        wav = self.audio(i)
        if self.max_samples and len(wav) > self.max_samples:
            start = int(self.rng.integers(0, len(wav) - self.max_samples + 1)) if self.random_crop else 0
            wav = wav[start : start + self.max_samples]
        if self.gain_db > 0:
            wav = wav * np.float32(10 ** (self.rng.uniform(-self.gain_db, self.gain_db) / 20))
        text = None
        if self.captions is not None:
            text = self.captions[self.items[i].caption or ""]
        return wav, text, self.targets[i], i


def collate(samples: list[tuple[np.ndarray, torch.Tensor | None, np.ndarray, int]]) -> Batch:
    lengths = torch.tensor([len(s[0]) for s in samples], dtype=torch.long)
    waveform = torch.zeros(len(samples), int(lengths.max()))
    for i, s in enumerate(samples):
        waveform[i, : len(s[0])] = torch.from_numpy(s[0])
    text = text_lengths = None
    if samples[0][1] is not None:
        feats, feat_lengths = pad_token_features([s[1].numpy() for s in samples])
        text, text_lengths = torch.from_numpy(feats), torch.from_numpy(feat_lengths)
    targets = torch.from_numpy(np.stack([s[2] for s in samples]))
    index = torch.tensor([s[3] for s in samples], dtype=torch.long)
    return Batch(waveform, lengths, text, text_lengths, targets, index)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: the worker's dataset copy gets its own augmentation generator.

    `get_worker_info().seed` is the loader's base seed for this epoch (drawn from the loader's
    generator) plus the worker id: distinct per worker and per epoch, and reproducible."""
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, ClipDataset):
        info.dataset.reseed(info.seed)


def make_loader(ds: ClipDataset, batch_size: int, shuffle: bool, num_workers: int,
                generator: torch.Generator | None = None, drop_last: bool = False,
                shard: tuple[int, int] | None = None) -> DataLoader:
    """The trainer's data loader: padded Batches, workers seeded by `seed_worker`. With `shard`
    (rank, world) and `shuffle`: rank's contiguous chunk of each shuffled global batch of
    `batch_size` (mos.trainer.distributed)."""
    if shard is not None and shuffle:
        from mos.trainer.distributed import sharded_batches

        return DataLoader(ds, batch_sampler=sharded_batches(ds, batch_size, generator, drop_last, *shard),
                          collate_fn=collate, num_workers=num_workers, generator=generator, worker_init_fn=seed_worker)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, num_workers=num_workers,
                      generator=generator, drop_last=drop_last, worker_init_fn=seed_worker)
