"""Bias correction of a quantized variant: the mean shift of each output from fp32's, measured on
the calibration clips, folded into the variant's graph as a constant Add on that output.

Quantization moves a model's outputs by a random error and by an almost constant offset (the
rounding of many weights and activations adds up to a systematic shift; a pretrained encoder's
int8 can move every score by a fifth of how much the scores differ between clips while keeping
their ranks). The constant part is the standard thing to remove: it is measured on the clips the
variant was calibrated on, never on the held-out clips the int8 rule judges it on, so the rule
sees what the correction does to clips it was not fitted on.

Where the correction goes: an output that the graph ends with a clamp (Clip, Relu, or Min / Max
with a constant) is corrected before the clamp, so it stays in its range; any other output after
its last node (the bundle's scores are unclamped: the runtime clamps them after averaging a long
clip's windows). An output that must stay >= 0 (a listener spread) gets Max(., 0) after its
correction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mos.errors import MosError

PREFIX = "mos_bias_correction"
_CLAMPS = ("Clip", "Relu", "Min", "Max")


@dataclass
class BiasCorrection:
    """The constants added to a variant's outputs (output name -> offset, mean(fp32 - variant)
    on `clips` calibration clips)."""

    offsets: dict[str, float]
    clips: int

    def summary(self) -> dict[str, object]:
        """What mos.json records."""
        return {"measured_on": f"{self.clips} calibration clips",
                "offsets": {k: round(v, 6) for k, v in self.offsets.items()}}

    def line(self) -> str:
        """One report line."""
        per = ", ".join(f"'{k}' {v:+.4g}" for k, v in self.offsets.items())
        return (f"  bias correction (mean fp32 - int8 on the {self.clips} calibration clips, added to int8's "
                f"outputs in the graph): {per}")


def measure_offsets(ref: np.ndarray, got: np.ndarray, names: Sequence[str]) -> BiasCorrection:
    """The offset of each output (column j of `ref` [n, outputs], fp32's, and of `got`, the
    variant's, on the same n calibration clips): mean(ref - got)."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape or ref.ndim != 2 or ref.shape[1] != len(names) or len(ref) == 0:
        raise MosError(f"bias correction: expected two [clips, {len(names)}] arrays, got {ref.shape} and {got.shape}")
    return BiasCorrection({name: float((ref[:, j] - got[:, j]).mean()) for j, name in enumerate(names)}, len(ref))


def _constants(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.initializer}
    return names | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _clamp_input(graph: onnx.GraphProto, name: str) -> tuple[onnx.NodeProto, int] | None:
    """The first node of the clamp that ends output `name` (a chain of Clip, Relu, and Min / Max
    of the value and a constant), with the index of its data input; None when `name` is not
    clamped."""
    producer = {o: n for n in graph.node for o in n.output}
    constants = _constants(graph)
    first: tuple[onnx.NodeProto, int] | None = None
    tensor = name
    while (node := producer.get(tensor)) is not None and node.op_type in _CLAMPS:
        if node.op_type in ("Clip", "Relu"):
            k = 0
        else:
            data = [k for k, i in enumerate(node.input) if i not in constants]
            if len(node.input) != 2 or len(data) != 1:
                break
            k = data[0]
        first = (node, k)
        tensor = node.input[k]
    return first


def _after(graph: onnx.GraphProto, name: str, op: str, operand: str) -> None:
    """Make output `name` the result of `op`(its present value, `operand`), appended at the end;
    the present value keeps feeding whatever else in the graph reads it."""
    before = f"{PREFIX}/{name}/before_{op}"
    for node in graph.node:
        for k, tensor in enumerate(node.output):
            if tensor == name:
                node.output[k] = before
        for k, tensor in enumerate(node.input):
            if tensor == name:
                node.input[k] = before
    graph.node.append(helper.make_node(op, [before, operand], [name], name=f"{PREFIX}/{name}/{op}"))


def fold_offsets(path: Path, offsets: Mapping[str, float], nonnegative: Collection[str] = ()) -> None:
    """Rewrite the ONNX file `path` so that each output in `offsets` gets its offset added (before
    the clamp that ends it, if any; module docstring); the outputs in `nonnegative` are kept >= 0."""
    model = onnx.load(str(path))
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    missing = [k for k in offsets if k not in outputs]
    if missing:
        raise MosError(f"{path.name}: no output {', '.join(missing)} to correct (has {', '.join(outputs)})")
    for name, offset in offsets.items():
        dtype = helper.tensor_dtype_to_np_dtype(outputs[name].type.tensor_type.elem_type)
        const = f"{PREFIX}/{name}/offset"
        graph.initializer.append(numpy_helper.from_array(np.array(offset, dtype=dtype), const))
        clamp = _clamp_input(graph, name)
        if clamp is None:
            _after(graph, name, "Add", const)
        else:
            node, k = clamp
            corrected = f"{PREFIX}/{name}/corrected"
            add = helper.make_node("Add", [node.input[k], const], [corrected], name=f"{PREFIX}/{name}/Add")
            node.input[k] = corrected
            nodes = list(graph.node)
            nodes.insert(next(i for i, n in enumerate(nodes) if n is node), add)  # topological order
            del graph.node[:]
            graph.node.extend(nodes)
        if name in nonnegative:
            zero = f"{PREFIX}/{name}/zero"
            graph.initializer.append(numpy_helper.from_array(np.array(0.0, dtype=dtype), zero))
            _after(graph, name, "Max", zero)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
