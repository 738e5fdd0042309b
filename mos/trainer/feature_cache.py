"""Frozen-encoder features, computed once per clip window and kept on disk.

A frozen pretrained audio encoder (mos.model.encoders) gives the same features for the same audio
every epoch, so the trainer runs it once per clip window before training and afterwards trains
only what follows it (the encoder's `mix` and the head). Windows are the ones `mos score` cuts
(`split_windows` at the model's window length), so validation scores clips exactly as the runtime
does: every window scored, the unclamped window scores averaged weighted by window length, then
clamped. Training draws one of a clip's windows at random each epoch.

Cache layout: <root>/<kind>-<encoder sha256[:16]>-<rate>hz-<window>-<resampler>-<code version>/
<audio file sha256>.npz, one file per clip with `w0, w1, ...` (features [T, ...] per window), `frames`
(valid frames per window), `samples` (samples per window) and `code_version` (the encoder family's
code that made them, EncoderInfo.code_version). The key covers the file's bytes, the sample rate,
the window, the encoder's files and the code version, so a changed clip, encoder or encoder code is
encoded again and cross-validation folds share one cache; a file whose stored code version is not
this mos's (or that has none) is encoded again too, never reused. Features are stored as float32,
or float16 when a window's features exceed FLOAT16_ABOVE_MB (hidden-state stacks of speech models).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mos.audio import read_audio
from mos.data.manifest import Item
from mos.audio import RESAMPLER
from mos.errors import MosError, one_line
from mos.files import cache_root, replace_atomically, sha256_file
from mos.model.encoders import PretrainedAudioEncoder
from mos.model.encoders.stack import StackedAudioEncoder, pool_features
from mos.runtime.batching import pad_waveforms, plan_batches
from mos.windows import split_windows

FLOAT16_ABOVE_MB = 4.0
OFF = "none"


def default_cache_root() -> Path:
    """$MOS_CACHE_DIR/features, else ~/.cache/mos/features."""
    return cache_root("features")


@dataclass
class ClipFeatures:
    """One clip's cached windows."""

    windows: list[np.ndarray]  # features [T, ...] per window
    frames: np.ndarray  # [n] valid frames per window
    samples: np.ndarray  # [n] samples per window (the scoring weight)


class FeatureCache:
    """Features of one frozen encoder at one rate and window, for the clips of a run."""

    def __init__(self, root: Path, encoder: PretrainedAudioEncoder, window: int, device: torch.device,
                 batch_size: int = 16) -> None:
        info = encoder.info
        self.code_version = info.code_version
        self.dir = root / f"{info.kind}-{info.sha256[:16]}-{info.sample_rate}hz-{window}-{RESAMPLER}-{info.code_version}"
        self.encoder = encoder
        self.rate = info.sample_rate
        self.window = window
        self.device = device
        self.batch_size = batch_size
        self.equal_lengths = not info.padding_invariant
        self._keys: dict[str, str] = {}  # clip path -> cache file stem
        self.clips: dict[str, ClipFeatures] = {}  # clip path -> features, once prepared

    def path_for(self, item: Item) -> Path:
        key = self._keys.get(item.path)
        if key is None:
            try:
                key = self._keys[item.path] = sha256_file(Path(item.path))
            except OSError as exc:
                raise MosError(f"{item.path}: cannot read ({one_line(exc, limit=120)})") from None
        return self.dir / f"{key}.npz"

    def prepare(self, items: list[Item], report: Callable[[str], None] = lambda s: None) -> None:
        """Load every clip's features, encoding (and storing) those not cached yet or made by
        other code (another FEATURES_VERSION of the encoder family; said in one line)."""
        todo = []
        others: list[str] = []  # the code versions of cached files made by other code
        for it in items:
            if it.path in self.clips:
                continue
            path = self.path_for(it)
            if path.is_file():
                try:
                    made_by, clip = _read(path, self.code_version)
                except (OSError, ValueError, KeyError):
                    made_by, clip = self.code_version, None  # a damaged cache file is simply made again
                if clip is not None:
                    self.clips[it.path] = clip
                    continue
                if made_by != self.code_version:
                    others.append(made_by or "unversioned")
            todo.append(it)
        if others:
            report(f"audio features: {len(others)} cached clip(s) made by other mos code ({', '.join(sorted(set(others)))}; "
                   f"this mos makes {self.code_version}), encoding them again")
        if todo:
            t0 = time.perf_counter()
            self._encode(todo)
            report(f"audio features: {len(todo)} clip(s) encoded with {self.encoder.info.name} in "
                   f"{time.perf_counter() - t0:.1f} s; {len(items) - len(todo)} from the cache ({self.dir})")
        else:
            report(f"audio features: all {len(items)} clip(s) from the cache ({self.dir})")

    def _encode(self, items: list[Item]) -> None:
        """Run the encoder over every window of `items` (batched; equal lengths only when the
        encoder is not padding invariant) and write one file per clip."""
        pieces: list[np.ndarray] = []
        owner: list[tuple[int, int]] = []
        for i, it in enumerate(items):
            for j, piece in enumerate(split_windows(read_audio(it.path, self.rate), self.window)):
                pieces.append(piece)
                owner.append((i, j))
        feats: list[np.ndarray | None] = [None] * len(pieces)
        frames = np.zeros(len(pieces), dtype=np.int64)
        was_training = self.encoder.training
        self.encoder.eval()
        with torch.no_grad():
            for batch in plan_batches([len(p) for p in pieces], self.batch_size, self.equal_lengths):
                wave, lengths = pad_waveforms([pieces[k] for k in batch])
                out, n = self.encoder.features(torch.from_numpy(wave).to(self.device),
                                               torch.from_numpy(lengths).to(self.device))
                out, n = out.float().cpu().numpy(), n.cpu().numpy()
                for row, k in enumerate(batch):
                    frames[k] = int(n[row])
                    feats[k] = out[row, : max(1, int(n[row]))]
        self.encoder.train(was_training)
        self.dir.mkdir(parents=True, exist_ok=True)
        for i, it in enumerate(items):
            ks = [k for k, (o, _) in enumerate(owner) if o == i]
            clip = ClipFeatures([feats[k] for k in ks], frames[ks], np.array([len(pieces[k]) for k in ks], dtype=np.int64))
            _write(self.path_for(it), clip, self.code_version)
            self.clips[it.path] = clip


class StackFeatureCache:
    """Features of a stack of frozen encoders (mos.model.encoders.stack): one FeatureCache per
    member, under the member's own key (so a member's features cached alone are reused, and the
    other way round), combined per clip window as the stack's `features` combines them (each
    member's features averaged over its valid frames, flattened and concatenated: [1, F])."""

    def __init__(self, root: Path, encoder: StackedAudioEncoder, window: int, device: torch.device,
                 batch_size: int = 16) -> None:
        self.members = [FeatureCache(root, m, window, device, batch_size) for m in encoder.members]
        self.clips: dict[str, ClipFeatures] = {}

    def prepare(self, items: list[Item], report: Callable[[str], None] = lambda s: None) -> None:
        """Prepare every member's cache, then combine each clip's windows."""
        for cache in self.members:
            cache.prepare(items, report)
        for it in items:
            if it.path in self.clips:
                continue
            parts = [cache.clips[it.path] for cache in self.members]
            windows = [np.concatenate([_pooled(p.windows[j], int(p.frames[j])) for p in parts])[None, :]
                       for j in range(len(parts[0].windows))]
            self.clips[it.path] = ClipFeatures(windows, np.ones(len(windows), dtype=np.int64), parts[0].samples)


def _pooled(window: np.ndarray, frames: int) -> np.ndarray:
    """One cached window's features [T, ...] as the stack's `features` pools them: [F]."""
    pooled = pool_features(torch.from_numpy(window.astype(np.float32))[None], torch.tensor([frames]))
    return pooled[0].numpy()


def make_feature_cache(root: Path, encoder: PretrainedAudioEncoder, window: int, device: torch.device,
                       batch_size: int = 16) -> FeatureCache | StackFeatureCache:
    """The cache for `encoder`: a stack's per member, else one."""
    if isinstance(encoder, StackedAudioEncoder):
        return StackFeatureCache(root, encoder, window, device, batch_size)
    return FeatureCache(root, encoder, window, device, batch_size)


def _write(path: Path, clip: ClipFeatures, code_version: str) -> None:
    big = clip.windows[0].nbytes / 2**20 > FLOAT16_ABOVE_MB
    arrays = {f"w{j}": (w.astype(np.float16) if big else w) for j, w in enumerate(clip.windows)}

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, frames=clip.frames, samples=clip.samples, code_version=np.str_(code_version), **arrays)

    replace_atomically(path, save)


def _read(path: Path, code_version: str) -> tuple[str | None, ClipFeatures | None]:
    """The code version a cache file records (None: none) and its features, read only when that
    is `code_version` (else None)."""
    with np.load(path, allow_pickle=False) as z:
        made_by = str(z["code_version"]) if "code_version" in z.files else None
        if made_by != code_version:
            return made_by, None
        frames, samples = z["frames"], z["samples"]
        windows = [z[f"w{j}"].astype(np.float32) for j in range(len(frames))]
    return made_by, ClipFeatures(windows, frames, samples)


@dataclass
class FeatureBatch:
    """Cached encoder features of a batch of clip windows."""

    feats: torch.Tensor  # [B, T, ...], zero past each window's frames
    frame_lengths: torch.Tensor  # [B]
    samples: torch.Tensor  # [B] samples per window (scoring weights)
    text: torch.Tensor | None
    text_lengths: torch.Tensor | None
    targets: torch.Tensor  # [B, n_targets], normalised
    index: torch.Tensor  # [B] positions in the manifest (the clip each window belongs to)

    def to(self, device: torch.device) -> "FeatureBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return FeatureBatch(*(move(getattr(self, f)) for f in
                              ("feats", "frame_lengths", "samples", "text", "text_lengths", "targets", "index")))


class FeatureDataset(Dataset):
    """Training: one random window of each clip per draw. Evaluation (`every_window`): every
    window of every clip, in manifest order."""

    def __init__(self, items: list[Item], cache: FeatureCache | StackFeatureCache, targets: np.ndarray,
                 captions: dict[str, torch.Tensor] | None, every_window: bool = False, seed: int = 0) -> None:
        self.items = items
        self.clips = [cache.clips[it.path] for it in items]
        self.targets = targets
        self.captions = captions
        self.rng = np.random.default_rng(seed)
        self.entries = ([(i, j) for i, c in enumerate(self.clips) for j in range(len(c.windows))]
                        if every_window else None)

    def __len__(self) -> int:
        return len(self.entries) if self.entries is not None else len(self.items)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, k: int) -> tuple[Any, ...]:
        if self.entries is not None:
            i, j = self.entries[k]
        else:
            i = k
            n = len(self.clips[i].windows)
            j = int(self.rng.integers(0, n)) if n > 1 else 0
        clip = self.clips[i]
        text = None if self.captions is None else self.captions[self.items[i].caption or ""]
        return clip.windows[j], int(clip.frames[j]), int(clip.samples[j]), text, self.targets[i], i


def collate_features(samples: list[tuple[Any, ...]]) -> FeatureBatch:
    from mos.runtime.batching import pad_token_features

    longest = max(s[0].shape[0] for s in samples)
    first = samples[0][0]
    feats = torch.zeros((len(samples), longest, *first.shape[1:]), dtype=torch.float32)
    for b, s in enumerate(samples):
        feats[b, : s[0].shape[0]] = torch.from_numpy(s[0])
    text = text_lengths = None
    if samples[0][3] is not None:
        t, tl = pad_token_features([s[3].numpy() for s in samples])
        text, text_lengths = torch.from_numpy(t), torch.from_numpy(tl)
    return FeatureBatch(feats, torch.tensor([s[1] for s in samples], dtype=torch.long),
                        torch.tensor([s[2] for s in samples], dtype=torch.long), text, text_lengths,
                        torch.from_numpy(np.stack([s[4] for s in samples])),
                        torch.tensor([s[5] for s in samples], dtype=torch.long))


def feature_loader(ds: FeatureDataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                   drop_last: bool = False, shard: tuple[int, int] | None = None) -> DataLoader:
    """Batches of cached windows; with `shard` (rank, world) and `shuffle`, as make_loader's."""
    if shard is not None and shuffle:
        from mos.trainer.distributed import sharded_batches

        return DataLoader(ds, batch_sampler=sharded_batches(ds, batch_size, generator, drop_last, *shard),
                          collate_fn=collate_features, generator=generator)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_features,
                      generator=generator, drop_last=drop_last)
