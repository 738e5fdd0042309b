"""The model alone on pre-decoded, pre-padded batches: ONNX Runtime (fp32, int8, fp16) and
PyTorch eager on the same checkpoint, same batches, same text features. torch is imported only
when the eager backend is built."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mos.errors import one_line
from mos.bundle import EMBEDDING_OUTPUT, Bundle
from mos.runtime.batching import pad_waveforms, plan_batches
from mos.runtime.session import CUDA, SessionConfig, SessionRunner, open_session
from mos.runtime.batching import pad_token_features


@dataclass
class Batches:
    """Padded feeds for one batch size: (waveform, lengths, text, text_lengths) per batch."""

    batch_size: int
    feeds: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]]
    clips: int


def make_batches(waves: Sequence[np.ndarray], text: Sequence[np.ndarray] | None, batch_size: int,
                 equal_lengths: bool = False) -> Batches:
    """Similar-length batches as the engine forms them (plan_batches; equal lengths only for a
    bundle that is not padding invariant), padded once."""
    feeds = []
    for idx in plan_batches([w.shape[0] for w in waves], batch_size, equal_lengths):
        wave, lengths = pad_waveforms([waves[i] for i in idx])
        t = tl = None
        if text is not None:
            t, tl = pad_token_features([text[i] for i in idx])
        feeds.append((wave, lengths, t, tl))
    return Batches(batch_size, feeds, len(waves))


class Backend:
    """One way of running the audio model; `run_pass` scores every batch once."""

    name: str = ""
    provider: str = ""
    threaded: bool = True  # whether the thread count applies

    def set_threads(self, threads: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def run_batch(self, feed: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def run_pass(self, batches: Batches) -> float:
        """Seconds to score every batch once."""
        start = time.perf_counter()
        for feed in batches.feeds:
            self.run_batch(feed)
        return time.perf_counter() - start

    def close(self) -> None:
        pass


class OrtBackend(Backend):
    """audio.onnx (or a variant) in an ORT session opened as the runtime opens it."""

    def __init__(self, name: str, path: Path, device: str, uses_text: bool) -> None:
        self.name = name
        self.path = path
        self.device = device
        self.uses_text = uses_text
        self.runner: SessionRunner | None = None
        self.threads = -1
        self.threaded = device != "cuda"
        self.set_threads(0)

    def set_threads(self, threads: int) -> None:
        if threads == self.threads and self.runner is not None:
            return
        self.runner = SessionRunner(open_session(self.path, SessionConfig(device=self.device, threads=threads)))
        self.provider = self.runner.provider
        self.threaded = self.provider != CUDA
        self.threads = threads

    def run_batch(self, feed):
        wave, lengths, text, text_lengths = feed
        feeds = {"waveform": wave, "lengths": lengths}
        if self.uses_text:
            feeds["text"], feeds["text_lengths"] = text, text_lengths
        assert self.runner is not None
        out = self.runner.run(feeds)
        # The scores (and spreads), one [batch] output each; not the pooled embedding [batch, dim].
        return np.stack([np.asarray(o, dtype=np.float32).reshape(-1)
                         for name, o in zip(self.runner.output_names, out) if name != EMBEDDING_OUTPUT], axis=1)


class TorchBackend(Backend):
    """The checkpoint's MosModel in PyTorch eager mode (inference_mode), scores on the target scale,
    unclamped like the exported graph's."""

    def __init__(self, checkpoint: Path, device: str) -> None:
        import torch

        from mos.trainer.checkpoint import load_model

        self.torch = torch
        self.model, _ = load_model(checkpoint)
        self.dev = torch.device("cuda" if device == "cuda" else "cpu")
        self.model.to(self.dev)
        self.name = "torch-eager" + ("-cuda" if self.dev.type == "cuda" else "")
        self.provider = f"torch {torch.__version__} ({self.dev.type})"
        self.threaded = self.dev.type == "cpu"
        self._default_threads = torch.get_num_threads()

    def set_threads(self, threads: int) -> None:
        if self.threaded:
            self.torch.set_num_threads(threads if threads > 0 else self._default_threads)

    def run_batch(self, feed):
        torch = self.torch
        wave, lengths, text, text_lengths = feed
        with torch.inference_mode():
            args = [torch.from_numpy(wave).to(self.dev), torch.from_numpy(lengths).to(self.dev)]
            if text is not None and self.model.cfg.uses_text:
                args += [torch.from_numpy(text).to(self.dev), torch.from_numpy(text_lengths).to(self.dev)]
            out = self.model.scores(*args, clamp=False)  # unclamped, as audio.onnx (bundle schema 2)
            if self.dev.type == "cuda":
                torch.cuda.synchronize()
            return out.float().cpu().numpy()

    def close(self) -> None:
        self.torch.set_num_threads(self._default_threads)


def torch_available() -> str | None:
    """None when torch can be imported, else why not."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    return None


def build_backends(bundle: Bundle, device: str, checkpoint: Path | None,
                   notes: list[str]) -> list[Backend]:
    """Eager (when torch and the checkpoint are there), ORT fp32, int8 and fp16 (when exported;
    fp16 only on CUDA). Problems become notes, not failures."""
    backends: list[Backend] = []
    if checkpoint is not None:
        why = torch_available()
        if why is None:
            try:
                backends.append(TorchBackend(checkpoint, device))
            except Exception as exc:  # a stale or foreign checkpoint: say so and go on
                notes.append(f"PyTorch eager skipped: {checkpoint}: {one_line(exc, limit=200)}")
        else:
            notes.append(f"PyTorch eager skipped: {why}")
    variants = bundle.meta.get("variants") or {}
    fp32 = OrtBackend("ort-fp32", bundle.audio_model("fp32"), device, bundle.uses_text)
    backends.append(fp32)
    on_cuda = fp32.provider == CUDA
    if on_cuda:
        fp32.name = "ort-fp32-cuda"
    if "int8" in variants and not on_cuda:
        backends.append(OrtBackend("ort-int8", bundle.audio_model("int8"), device, bundle.uses_text))
    elif "int8" not in variants:
        notes.append("no int8 variant in the bundle (mos export --quantize int8): ORT int8 not measured")
    if "fp16" in variants and on_cuda:
        backends.append(OrtBackend("ort-fp16-cuda", bundle.audio_model("fp16"), device, bundle.uses_text))
    return backends


def agreement(backends: Sequence[Backend], batches: Batches) -> dict[str, float]:
    """Max |score - ort-fp32 score| over the first batch, per backend (a same-model check)."""
    ref = next((b for b in backends if b.name.startswith("ort-fp32")), None)
    if ref is None or not batches.feeds:
        return {}
    base = ref.run_batch(batches.feeds[0])
    return {b.name: float(np.max(np.abs(b.run_batch(batches.feeds[0]) - base)))
            for b in backends if b is not ref}


def interleaved(backends: Sequence[Backend], batches: Batches, repeats: int,
                on_pass: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Clips/s of each backend over `repeats` passes, interleaved so that outside load hits every
    backend alike; one untimed warm-up pass each first."""
    for b in backends:
        b.run_pass(batches)
    rates: dict[str, list[float]] = {b.name: [] for b in backends}
    for _ in range(max(1, repeats)):
        for b in backends:
            secs = b.run_pass(batches)
            rates[b.name].append(batches.clips / secs if secs > 0 else 0.0)
            if on_pass is not None:
                on_pass()
    return rates


def summary_of(backend: Backend) -> dict[str, Any]:
    return {"name": backend.name, "provider": backend.provider}
