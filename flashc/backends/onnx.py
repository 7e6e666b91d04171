"""IR -> ONNX ModelProto, built directly with the onnx helpers (no torch).

Each op emits its nodes on a :class:`Tape`; initializers carry the state-dict
names, and symbolic dims become named dynamic dimensions.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from flashc.diagnostics import FlashError, error
from flashc.ir.graph import Graph, Node
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering
from flashc.version import __version__
from flashc.weights import NUMPY_DTYPES, WeightSource, atomic_files

DEFAULT_OPSET = 23
MIN_OPSET = 17
ONNX_DTYPES = {
    "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
    "float64": TensorProto.DOUBLE, "int64": TensorProto.INT64, "int32": TensorProto.INT32,
    "int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "bool": TensorProto.BOOL,
}


class Tape:
    """Records ONNX nodes and constants with unique, readable names."""

    def __init__(self, opset: int, scope: str = "") -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.scope = scope
        self._names: set[str] = set()
        self._count = itertools.count()

    def fresh(self, base: str) -> str:
        base = f"{self.scope}/{base}" if self.scope else base
        name = base
        while name in self._names:
            name = f"{base}_{next(self._count)}"
        self._names.add(name)
        return name

    def child(self) -> Tape:
        """A tape for a sub-graph: its own nodes, the same names and constants as this one."""
        tape = Tape(self.opset)
        tape._names, tape._count, tape.constants = self._names, self._count, self.constants
        return tape

    def reserve(self, name: str) -> None:
        self._names.add(name)

    def op(self, op_type: str, inputs: list[str | None], attrs: dict[str, Any] | None = None,
           outputs: int = 1, domain: str = "") -> Any:
        outs = [self.fresh(op_type.lower()) for _ in range(outputs)]
        ins = ["" if i is None else i for i in inputs]
        while ins and ins[-1] == "":
            ins.pop()
        self.nodes.append(helper.make_node(op_type, ins, outs, name=self.fresh(f"n_{op_type}"), domain=domain or None,
                                           **(attrs or {})))
        return outs[0] if outputs == 1 else outs

    def const(self, value: Any, dtype: str) -> str:
        name = self.fresh("const")
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=NUMPY_DTYPES[dtype]), name))
        return name


def value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    dims = [d if isinstance(d, int) else str(d) for d in t.shape]
    return helper.make_tensor_value_info(name, ONNX_DTYPES[t.dtype], dims)


def lower(graph: Graph, opset: int = DEFAULT_OPSET) -> tuple[onnx.ModelProto, list[str]]:
    """The ONNX model without its weights, and the weight paths it reads (sorted)."""
    if not MIN_OPSET <= opset <= DEFAULT_OPSET:
        raise error(graph.span, f"opset {opset} is not supported; use {MIN_OPSET} to {DEFAULT_OPSET}")
    tape = Tape(opset)
    for v in graph.inputs:
        tape.reserve(v.name)
    for path in graph.weights:
        tape.reserve(path)
    env: dict[str, str] = {v.name: v.name for v in graph.inputs}
    _lower_nodes(graph.nodes, tape, env)
    tape.scope = ""
    _name_outputs(graph, tape, env)
    read = _reads(tape.nodes)
    used = sorted(p for p in graph.weights if p in read)
    g = helper.make_graph(
        tape.nodes, graph.name,
        [value_info(v.name, v.type) for v in graph.inputs],
        [value_info(name, v.type) for name, v in graph.outputs],
        initializer=tape.constants,
    )
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", opset)], producer_name="flashc",
        producer_version=__version__, doc_string=f"{graph.name} compiled by flashc from a .flash spec",
    )
    model.ir_version = min(model.ir_version, 10)
    helper.set_model_props(model, {"flashc_version": __version__, "spec_sha256": graph.source_hash,
                                   "model": graph.name})
    return model, used


def _lower_nodes(nodes: tuple[Node, ...], tape: Tape, env: dict[str, str]) -> None:
    """Emit each node's ONNX nodes on ``tape``; ``env`` maps IR value names to ONNX names."""
    for node in nodes:
        c = Lowering(
            inputs=[env[v.name] if v is not None else None for v in node.inputs],
            types=[v.type if v is not None else None for v in node.inputs],
            out_types=[o.type for o in node.outputs],
            weights=node.weight_map,
            bodies=[functools.partial(_subgraph, g, tape, dict(env)) for g in node.bodies],
        )
        tape.scope = node.layer or node.outputs[0].name
        try:
            result = node.op.to_onnx(tape, c)
        except FlashError:
            raise
        except Exception as exc:  # a lowering bug must still point at the user's line
            raise error(node.span, f"cannot lower `{node.op.name}` to ONNX opset {tape.opset}: {exc}") from None
        results = result if isinstance(result, list) else [result]
        for out, name in zip(node.outputs, results):
            env[out.name] = name


def _subgraph(body: Graph, outer: Tape, env: dict[str, str]) -> onnx.GraphProto:
    """A node's body as an ONNX sub-graph (a Scan's step).

    Its nodes come from the same op lowerings; it reads weights and earlier values of the
    enclosing graph by name (ONNX's outer scope), and its constants join the main graph's.
    """
    tape = outer.child()
    for v in body.inputs:
        tape.reserve(v.name)
        env[v.name] = v.name
    _lower_nodes(body.nodes, tape, env)
    tape.scope = ""
    outputs = [tape.op("Identity", [env[v.name]]) for _, v in body.outputs]  # each output its own name
    return helper.make_graph(tape.nodes, tape.fresh(f"body_{body.name}"),
                             [value_info(v.name, v.type) for v in body.inputs],
                             [value_info(name, v.type) for name, (_, v) in zip(outputs, body.outputs)])


def _reads(nodes: Any) -> set[str]:
    """Every value name the nodes read, those of their sub-graphs included."""
    read: set[str] = set()
    for n in nodes:
        read.update(n.input)
        for attr in n.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                read |= _reads(g.node)
    return read


def to_onnx_model(graph: Graph, weights: dict[str, Any] | str | Path | None = None, seed: int = 0,
                  opset: int = DEFAULT_OPSET, check: bool = True) -> onnx.ModelProto:
    """Lower a checked graph to a self-contained in-memory ONNX model."""
    model, used = lower(graph, opset)
    wanted = set(used)
    model.graph.initializer.extend(
        numpy_helper.from_array(arr, path) for path, arr in WeightSource(graph, weights, seed) if path in wanted
    )
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


EXTERNAL_ABOVE = 1_900_000_000  # protobuf cannot hold a message over 2 GiB


def write_onnx(path: str | Path, graph: Graph, weights: dict[str, Any] | str | Path | None = None, seed: int = 0,
               opset: int = DEFAULT_OPSET, check: bool = True, external: bool | None = None) -> Path | None:
    """Stream the model to ``path`` one weight at a time (peak memory: about one tensor).

    The weights are appended as a second occurrence of the graph field, which
    protobuf merges into the first. Above 2 GB (or with ``external``) they go to
    ``path.data`` as ONNX external data. Both files are written atomically.
    Returns the external data file, if any.
    """
    source = WeightSource(graph, weights, seed)
    model, used = lower(graph, opset)
    if check:
        _check_skeleton(model, graph, used)
    sizes = {p: graph.weights[p].spec.size * np.dtype(NUMPY_DTYPES[graph.weights[p].spec.dtype]).itemsize for p in used}
    external = sum(sizes.values()) > EXTERNAL_ABOVE if external is None else external
    target = Path(path)
    data_name = f"{target.name}.data"
    headers: dict[str, bytes] = {}
    offset = 0
    for p in used:
        t = onnx.TensorProto(name=p, data_type=ONNX_DTYPES[graph.weights[p].spec.dtype], dims=graph.weights[p].spec.shape)
        if external:
            t.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(sizes[p]))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            offset += sizes[p]
            headers[p] = t.SerializeToString()
        else:
            headers[p] = t.SerializeToString() + _field(9, sizes[p])
    entries = {p: _field(5, len(headers[p]) + (0 if external else sizes[p])) + headers[p] for p in used}
    graph_len = sum(len(e) + (0 if external else sizes[p]) for p, e in entries.items())
    with atomic_files(target, target.with_name(data_name) if external else None) as (fh, data_fh):
        fh.write(model.SerializeToString())
        fh.write(_field(7, graph_len))
        for p, arr in source:
            if p not in entries:
                continue
            fh.write(entries[p])
            (data_fh if external else fh).write(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return target.with_name(data_name) if external else None


def _field(number: int, length: int) -> bytes:
    """A length-delimited protobuf field header: tag, then the length as a varint."""
    return _varint(number << 3 | 2) + _varint(length)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _check_skeleton(model: onnx.ModelProto, graph: Graph, used: list[str]) -> None:
    """Check the graph with its weights declared as typed inputs: same structure, no weight bytes."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    for p in used:
        w = graph.weights[p].spec
        skeleton.graph.input.append(helper.make_tensor_value_info(p, ONNX_DTYPES[w.dtype], list(w.shape)))
    onnx.checker.check_model(skeleton, full_check=True)


def _name_outputs(graph: Graph, tape: Tape, env: dict[str, str]) -> None:
    """Make the graph outputs carry the spec's output names."""
    produced = {o: n for n in tape.nodes for o in n.output}
    renames: dict[str, str] = {}
    for name, v in graph.outputs:
        current = env[v.name]
        if current in produced and current not in renames and current not in {i.name for i in graph.inputs}:
            renames[current] = name
        else:
            tape.nodes.append(helper.make_node("Identity", [current], [name], name=f"n_output_{name}"))
    for node in tape.nodes:
        for seq in (node.input, node.output):
            for i, n in enumerate(seq):
                if n in renames:
                    seq[i] = renames[n]
