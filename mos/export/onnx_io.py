"""TorchScript ONNX export with an exact opset check, metadata embedding, and interface reading."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from mos.errors import BundleError, MosError, one_line

EXPORTER = "torch.onnx (TorchScript)"
METADATA_KEY = "mos.json"


def default_opset(model: onnx.ModelProto) -> int | None:
    """The version of the default ('' or 'ai.onnx') domain in a model's opset_import."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def export_torchscript(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    static_dims: dict[str, dict[int, int]] | None = None,
) -> None:
    """torch.onnx.export(dynamo=False) into one file; fails unless the file's opset == `opset`.
    `static_dims` ({output: {axis: size}}) declares output axes of a known fixed size that the
    tracer left symbolic (a size computed in the graph, e.g. a pooled embedding's width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                external_data=False,
            )
    except MosError:
        raise
    except Exception as exc:  # the exporter raises many types (unsupported op, opset out of range)
        raise MosError(f"{path.name}: the TorchScript exporter failed at opset {opset}: {one_line(exc, limit=300)}") from None
    model = onnx.load(str(path), load_external_data=False)
    got = default_opset(model)
    if static_dims:
        for out in model.graph.output:
            for axis, size in static_dims.get(out.name, {}).items():
                dim = out.type.tensor_type.shape.dim[axis]
                dim.ClearField("dim_param")
                dim.dim_value = int(size)
        onnx.save(model, str(path))
    if got != opset:
        raise BundleError(
            f"{path.name}: asked for opset {opset} but the exporter wrote opset {got} "
            f"(the file's default-domain opset_import must equal --opset; try the opset it supports)"
        )


def embed_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Write `meta` as JSON into the ONNX file's metadata_props['mos.json'] (replacing any old one)."""
    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta, sort_keys=True))
    onnx.save(model, str(path))


def read_metadata(model: onnx.ModelProto) -> dict[str, Any] | None:
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None


def value_dims(value: onnx.ValueInfoProto) -> list[str | int]:
    """Each dim of a graph input/output: its dim_param when symbolic, else its dim_value."""
    dims: list[str | int] = []
    for d in value.type.tensor_type.shape.dim:
        dims.append(d.dim_param if d.HasField("dim_param") else int(d.dim_value))
    return dims


def interface(model: onnx.ModelProto) -> tuple[dict[str, list[str | int]], dict[str, list[str | int]]]:
    """({input name: dims}, {output name: dims}) in graph order, initializers excluded."""
    inits = {i.name for i in model.graph.initializer}
    inputs = {v.name: value_dims(v) for v in model.graph.input if v.name not in inits}
    outputs = {v.name: value_dims(v) for v in model.graph.output}
    return inputs, outputs


def check_onnx(path: Path) -> onnx.ModelProto:
    """onnx.checker on the file (by path, so large models work); returns the loaded model."""
    try:
        onnx.checker.check_model(str(path))
        return onnx.load(str(path))
    except Exception as exc:
        raise BundleError(f"{path}: fails onnx.checker ({one_line(exc, limit=300)})") from None
