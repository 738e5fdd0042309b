"""Caption -> token features with the bundle's tokenizer.json and text.onnx, each caption once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mos.errors import BundleError, MosError, one_line
from mos.runtime.session import SessionRunner


def load_tokenizer(path: Path, max_tokens: int):  # -> tokenizers.Tokenizer
    """A `tokenizers.Tokenizer` truncating to `max_tokens`, without padding (padded per batch here)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise BundleError(f"{path}: not a readable tokenizer.json ({one_line(exc, limit=160)})") from None
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return tok



def pad_token_ids(ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """text.onnx feeds for token id lists: input_ids and attention_mask [n, longest] int64, zero
    padded (an empty list becomes one padded position, masked out)."""
    width = max(1, max((len(i) for i in ids), default=0))
    input_ids = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class CaptionSource(Protocol):
    """What the audio model's caller needs: token features [n_i, dim] per caption."""

    def encode(self, captions: Sequence[str]) -> list[np.ndarray]: ...


class TextEncoder:
    """Encodes captions with text.onnx; a caption is encoded once and kept (LRU, `cache_bytes`).
    `encode` may be called from several threads (the pipeline's concurrent batches): one runs at a time.

    Features are the first n_i token rows of the encoder output, n_i = the caption's token count
    (an encoder that pools, such as CLAP's text tower, outputs one row per caption: that row).
    """

    def __init__(
        self,
        runner: SessionRunner,
        tokenizer_path: Path,
        max_tokens: int,
        batch_size: int = 64,
        cache_bytes: int = 16 << 20,  # MusicEval: 384 prompts x ~20 tokens x 384 x 4 B = 12 MB
    ) -> None:
        self.runner = runner
        self.tokenizer = load_tokenizer(tokenizer_path, max_tokens)
        self.max_tokens = max_tokens
        self.batch_size = max(1, batch_size)
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self.encoded = 0  # captions run through text.onnx (cache misses)
        self._lock = threading.Lock()

    def _remember(self, caption: str, features: np.ndarray) -> None:
        self._cache[caption] = features
        self._cached_bytes += features.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes

    def ids(self, captions: Sequence[str]) -> list[list[int]]:
        """Token ids per caption, truncated to `max_tokens`, unpadded."""
        return [list(e.ids) for e in self.tokenizer.encode_batch(list(captions))]

    def features(self, ids: list[list[int]]) -> list[np.ndarray]:
        """text.onnx on token id lists (padded here to the longest) -> features per list."""
        (hidden,) = self.runner.run(pad_token_ids(ids))[:1]
        return [np.ascontiguousarray(hidden[row, : max(1, len(seq))], dtype=np.float32) for row, seq in enumerate(ids)]

    def _batched(self, captions: Sequence[str]) -> dict[str, np.ndarray]:
        """Token features of each distinct caption, encoded in batches of similar token length."""
        todo = list(dict.fromkeys(captions))
        out: dict[str, np.ndarray] = {}
        if not todo:
            return out
        ids = dict(zip(todo, self.ids(todo)))
        todo.sort(key=lambda c: len(ids[c]))  # similar lengths together: little padding
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            out.update(zip(chunk, self.features([ids[c] for c in chunk])))
        return out

    def encode_uncached(self, captions: Sequence[str]) -> dict[str, np.ndarray]:
        """`_batched` without touching the cache (for a caller that keeps features itself, as the
        pipeline does)."""
        out = self._batched(captions)
        with self._lock:
            self.encoded += len(out)
        return out

    def encode(self, captions: Sequence[str]) -> list[np.ndarray]:
        """Token features [n_i, dim] per caption; new distinct captions are encoded in batches."""
        with self._lock:
            return self._encode(captions)

    def _encode(self, captions: Sequence[str]) -> list[np.ndarray]:
        new = self._batched([c for c in captions if c not in self._cache])
        for caption, feats in new.items():
            self._remember(caption, feats)
        self.encoded += len(new)
        out = []
        for c in captions:
            feats = self._cache.get(c)
            if feats is None:  # evicted by this very call (cache smaller than one chunk)
                feats = self.features([self.tokenizer.encode(c).ids])[0]
                self._remember(c, feats)
            else:
                self._cache.move_to_end(c)
            out.append(feats)
        return out


class CaptionTable:
    """Captions encoded beforehand: every token row in one float32 array [total, dim] plus the
    row offsets, so the table crosses process boundaries as two flat arrays (Ray's object store
    hands them to each actor of a node without copies). `encode` looks captions up; a caption
    not in the table is a MosError, never a silent zero."""

    def __init__(self, captions: Sequence[str], features: np.ndarray, offsets: np.ndarray) -> None:
        self.index = {c: i for i, c in enumerate(captions)}
        self.features = features
        self.offsets = offsets

    @classmethod
    def build(cls, encoder: CaptionSource, captions: Iterable[str], chunk: int = 4096) -> CaptionTable:
        """Encode each distinct caption once with `encoder`, `chunk` captions at a time."""
        distinct = list(dict.fromkeys(captions))
        parts: list[np.ndarray] = []
        for start in range(0, len(distinct), chunk):
            parts.extend(encoder.encode(distinct[start : start + chunk]))
        sizes = np.array([p.shape[0] for p in parts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        dim = parts[0].shape[1] if parts else 0
        features = np.concatenate(parts, axis=0).astype(np.float32, copy=False) if parts else np.zeros((0, dim), np.float32)
        return cls(distinct, features, offsets)

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes + self.offsets.nbytes)

    def __len__(self) -> int:
        return len(self.index)

    def encode(self, captions: Sequence[str]) -> list[np.ndarray]:
        out = []
        for c in captions:
            i = self.index.get(c)
            if i is None:
                raise MosError(f"caption not encoded beforehand: {c[:60]!r}")
            out.append(self.features[self.offsets[i] : self.offsets[i + 1]])
        return out
