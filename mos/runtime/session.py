"""ONNX Runtime sessions: provider choice (auto/cpu/cuda), threads, and io-bound runs on CUDA."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mos.errors import BundleError, MosError, one_line

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
INSTALL_HINT = ("onnxruntime is not installed: pip install onnxruntime (onnxruntime-gpu for CUDA), "
                "or the [cpu]/[gpu] extra of mos-toolkit")


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, or MosError with the install command when it is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise MosError(INSTALL_HINT) from None
    return onnxruntime


def usable_cores() -> int:
    """CPUs this process may run on (the affinity mask), else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SessionConfig:
    """How to open sessions: device ('auto', 'cpu', 'cuda') and CPU intra-op threads (0 = ORT default)."""

    device: str = "auto"
    threads: int = 0
    gpu_id: int = 0


def _cuda_available(ort: ModuleType) -> bool:
    return CUDA in ort.get_available_providers()


def _preload_cuda(ort: ModuleType) -> None:
    """Let onnxruntime-gpu find CUDA/cuDNN from pip-installed nvidia packages (ORT >= 1.21)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception:  # best effort: the session start says whether CUDA works
        pass


def _session_options(ort: ModuleType, cfg: SessionConfig) -> Any:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if cfg.threads > 0:
        so.intra_op_num_threads = cfg.threads
    so.inter_op_num_threads = 1
    # Memory patterns are planned and kept per input shape; clips, windows and captions come in
    # many shapes, so with them peak memory creeps up over a long run; without them it stays flat
    # (docs/onnx-notes.md, "Figures behind choices in the code").
    so.enable_mem_pattern = False
    # The reader threads decode while a batch runs: spinning ORT threads would steal their CPU.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so



def open_session(path: Path, cfg: SessionConfig) -> Any:
    """An InferenceSession on the provider `cfg.device` asks for.

    auto: CUDA when onnxruntime-gpu offers it and a GPU starts, else CPU. cuda: CUDA or MosError
    (never a silent fallback). cpu: CPU only. Unreadable models raise BundleError naming the file.
    """
    if cfg.device not in DEVICES:
        raise MosError(f"unknown device {cfg.device!r}: choose one of {', '.join(DEVICES)}")
    ort = import_onnxruntime()
    if cfg.device == "cuda" and not _cuda_available(ort):
        raise MosError(
            f"--device cuda: this onnxruntime ({ort.__version__}) has no CUDAExecutionProvider "
            f"(providers: {', '.join(ort.get_available_providers())}); pip install onnxruntime-gpu (instead of onnxruntime) for CUDA"
        )
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and _cuda_available(ort))
    providers: list[Any] = [CPU]
    if want_cuda:
        _preload_cuda(ort)
        providers = [(CUDA, {"device_id": cfg.gpu_id}), CPU]
    options = _session_options(ort, cfg)

    def create(chosen: list[Any]) -> Any:
        with warnings.catch_warnings():  # provider fallbacks are reported through get_providers()
            warnings.simplefilter("ignore", UserWarning)
            return ort.InferenceSession(str(path), sess_options=options, providers=chosen)

    try:
        session = create(providers)
    except Exception as exc:  # ORT raises its own exception types
        if not want_cuda:
            raise BundleError(f"{path}: not a loadable ONNX model ({one_line(exc, limit=200)})") from None
        try:  # is it the file or CUDA?
            session = create([CPU])
        except Exception as cpu_exc:
            raise BundleError(f"{path}: not a loadable ONNX model ({one_line(cpu_exc, limit=200)})") from None
        if cfg.device == "cuda":
            raise MosError(f"--device cuda: the CUDA provider failed to start ({one_line(exc, limit=200)})") from None
    if cfg.device == "cuda" and session.get_providers()[0] != CUDA:
        raise MosError("--device cuda: the CUDA provider failed to start (no GPU, or CUDA/cuDNN libraries missing)")
    return session


class SessionRunner:
    """Runs a session on numpy feeds; on CUDA it binds inputs and outputs to the device.

    `provider` is the provider that actually runs the graph (session.get_providers()[0]).
    """

    def __init__(self, session: Any, use_binding: bool | None = None, gpu_id: int = 0) -> None:
        self.session = session
        self.provider: str = session.get_providers()[0]
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.use_binding = (self.provider == CUDA) if use_binding is None else use_binding
        self.device = "cuda" if self.provider == CUDA else "cpu"
        self.gpu_id = gpu_id if self.device == "cuda" else 0

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in `output_names` order, as numpy arrays on the host."""
        if not self.use_binding:
            return self.session.run(self.output_names, feeds)
        ort = import_onnxruntime()
        binding = self.session.io_binding()
        keep = []  # OrtValues must outlive the run
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, self.gpu_id)
            keep.append(value)
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device, self.gpu_id)
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())
