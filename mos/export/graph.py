"""Find the log-mel front end and the fitted (svr/ridge) heads in an exported audio graph: both are
kept fp32 by the int8 and fp16 variants."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from mos.heads import FITTED_SCOPE


@dataclass
class FrontEnd:
    dft_convs: list[str]  # Conv nodes fed by the raw waveform (the DFT's strided conv, its first stage)
    nodes: list[str]  # every node from those convs up to (not including) the next Conv
    matmuls: list[str]  # MatMul nodes among them (the DFT's second stage, the mel projection)


# Ops whose output describes a tensor's shape, not its values: the signal does not flow through them
# (an encoder that reads the log-mel's batch size, as AST does for its CLS token, is not front end).
SHAPE_OPS = ("Shape", "Size")


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs, with the outer-scope values its subgraphs (If, Loop, Scan) read."""
    names = list(node.input)
    for attr in node.attribute:
        for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for sub in graph.node:
                names.extend(node_inputs(sub))
    return names


def front_end(model: onnx.ModelProto, waveform: str = "waveform") -> FrontEnd:
    """The DFT conv is the first Conv reachable from `waveform` with no Conv in between; the front
    end is that conv and every node downstream of it that does not pass through another Conv
    (values only: a Shape of a front-end tensor does not take its consumers into the front end;
    a subgraph's reads of outer values count as its node's inputs)."""
    nodes = list(model.graph.node)  # ONNX graphs are topologically sorted
    from_wave = {waveform}
    dft: list[str] = []
    for node in nodes:
        if node.op_type not in SHAPE_OPS and any(i in from_wave for i in node_inputs(node)):
            if node.op_type == "Conv":
                dft.append(node.name)
            else:
                from_wave.update(node.output)
    region = {o for n in nodes if n.name in dft for o in n.output}
    inside: list[str] = []
    for node in nodes:
        if node.op_type in ("Conv", *SHAPE_OPS) or not any(i in region for i in node_inputs(node)):
            continue
        region.update(node.output)
        inside.append(node.name)
    by_name = {n.name: n for n in nodes}
    matmuls = [n for n in inside if by_name[n].op_type == "MatMul"]
    return FrontEnd(dft, dft + inside, matmuls)


def fitted_head_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes of the fitted svr/ridge heads (mos.model.kernel_head), named "/<target>/fitted/...":
    their RBF kernel and dot products lose their accuracy in int8 or fp16."""
    return [n.name for n in model.graph.node if f"/{FITTED_SCOPE}/" in n.name]
