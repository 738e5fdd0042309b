"""fp16 variant for GPU use: onnxruntime's float16 converter, fp32 inputs/outputs and log-mel front end."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from mos.errors import one_line
from mos.export.graph import fitted_head_nodes, front_end
from mos.runtime.engine import EngineOptions, ScoreEngine

FP16_MODEL = "audio.fp16.onnx"


@dataclass
class Fp16Report:
    path: Path
    fp32_bytes: int
    fp16_bytes: int
    runs_on_cpu: bool
    max_abs_vs_fp32: float | None
    note: str


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs (the converter appends its
    input casts at the end, which onnx.checker rejects)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a dangling input at node {rest[0].name!r}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def convert_fp16(reference: ScoreEngine, out: Path, clip: np.ndarray, caption: str | None) -> Fp16Report:
    """Write `out` from `reference`'s fp32 audio model (keep_io_types=True) and try it on the ORT
    CPU provider, through the runtime's engine, against fp32 on `clip`."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp32 = reference.bundle.audio_model()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model = onnx.load(str(fp32))
        keep = front_end(model).nodes + fitted_head_nodes(model)
        half = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    topological_sort(half.graph)
    onnx.save(half, str(out))
    onnx.checker.check_model(str(out))
    seconds = len(clip) / reference.sample_rate
    try:
        engine = ScoreEngine(reference.bundle, EngineOptions(device="cpu"), audio_path=out, text=reference.text)
        got = engine.unpack(engine.score_segments([clip], [caption], 1))
    except Exception as exc:  # CPU kernels for some fp16 ops may be missing: GPU-only then
        return Fp16Report(out, fp32.stat().st_size, out.stat().st_size, False, None,
                          f"passes onnx.checker; ORT CPU cannot run it ({one_line(exc, limit=200)}); meant for CUDA")
    ref = reference.unpack(reference.score_segments([clip], [caption], 1))
    diff = float(np.abs(got - ref).max())
    return Fp16Report(out, fp32.stat().st_size, out.stat().st_size, True, diff,
                      f"runs on ORT CPU; max abs diff to fp32 {diff:.2e} on a {seconds:g} s clip")
