"""Post-passes on a written ONNX file, done by onnxruntime's own tools.

float16 export uses onnxruntime's float16 converter (inputs and outputs stay
float32, so callers feed the same arrays); ops onnxruntime has no float16 CPU
kernel for (recurrent layers, Scan steps, ScatterND's add) stay float32 with
their whole layer, and so do decision layers (a router's MatMul feeding TopK).
int8 uses onnxruntime's dynamic quantization of MatMul/Gemm weights, after its
pre-processing pass folds the weight transposes so the quantizer sees the
weights; decision layers stay float32, and an embedding table tied to the
output projection is stored once, as the projection's int8 copy.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from flashc.weights import atomic_files

# Ops that stay float32 (Casts around them) because onnxruntime's CPU provider has no float16
# kernel for them: its recurrent ops and Scan loops crash (exit 139) or are refused, ScatterND's
# `add` (the mixture-of-experts combine) is refused.
FLOAT32_OPS = ("LSTM", "GRU", "RNN", "Scan", "Loop", "ScatterND")


def to_float16(path: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(path))
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FLOAT32_OPS],
                                     node_block_list=_float32_layers(model) + decision_layers(model))
    _cast_outer_reads(model)
    with atomic_files(path) as (fh, _):
        fh.write(model.SerializeToString())


def _float32_layers(model: Any) -> list[str]:
    """Every node of a layer holding a FLOAT32_OPS node (flashc names nodes `layer/n_Op`).

    A whole recurrent layer stays float32, casts only at its edges: onnxruntime's full graph
    optimisation crashes (exit 139) on float16 Transpose/Unsqueeze feeding a float32 LSTM through casts.
    """
    scopes = {n.name.rpartition("/")[0] for n in model.graph.node if n.op_type in FLOAT32_OPS}
    scopes.discard("")
    names = [n.name for n in model.graph.node if n.name.rpartition("/")[0] in scopes]
    body = [inner for n in model.graph.node if n.op_type in FLOAT32_OPS for inner in _body_nodes(n)]
    return names + [n.name for n in body]


def _cast_outer_reads(model: Any) -> None:
    """A float32 body (a Scan's step) reads values of the float16 graph around it by name: cast them
    back to float32 at the top of the body (the converter casts only the main graph's edges)."""
    from onnx import TensorProto, helper

    halves = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16}
    halves |= {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type not in FLOAT32_OPS:
            continue
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                inside = {i.name for i in g.input} | {o for n in g.node for o in n.output}
                outer = sorted({i for n in g.node for i in n.input if i and i not in inside and i in halves})
                casts = [helper.make_node("Cast", [name], [f"{name}_fp32_in_body"], name=f"{name}_fp32_in_body",
                                          to=TensorProto.FLOAT) for name in outer]
                for n in g.node:
                    for k, i in enumerate(n.input):
                        if i in outer:
                            n.input[k] = f"{i}_fp32_in_body"
                for cast in reversed(casts):
                    g.node.insert(0, cast)


def _body_nodes(node: Any) -> list[Any]:
    """The nodes of a node's sub-graphs (a Scan's step), nested ones included: they stay float32 with it."""
    out = []
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in g.node:
                out += [inner, *_body_nodes(inner)]
    return out


def quantize_int8(path: Path) -> None:
    """int8 weights for MatMul/Gemm, except decision layers; a tied embedding table stored once, in int8."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice through the root logger
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
        # Only MatMul/Gemm: the quantizer would mistake the standard `Attention` op for its contrib namesake.
        quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=decision_layers(onnx.load(str(prepared), load_external_data=False)))
        model = onnx.load(str(quantized))
        share_tied_tables(model)
        with atomic_files(path) as (fh, _):
            fh.write(model.SerializeToString())


DECISIONS = ("TopK", "ArgMax", "ArgMin")
PASS_THROUGH = ("Add", "Mul", "Div", "Sub", "Softmax", "Reshape", "Transpose", "Cast", "Sigmoid", "Identity", "Squeeze",
                "Unsqueeze", "Flatten")


def decision_layers(model: Any, depth: int = 4) -> list[str]:
    """MatMul/Gemm nodes whose result is chosen among (TopK/ArgMax a few elementwise steps later: a
    mixture-of-experts router). Rounding their weights flips choices, and a flipped choice changes
    which computation runs, so they stay float32; they are small."""
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def decides(value: str, left: int) -> bool:
        for n in consumers.get(value, []):
            if n.op_type in DECISIONS:
                return True
            if left > 1 and n.op_type in PASS_THROUGH and any(decides(o, left - 1) for o in n.output):
                return True
        return False

    chosen = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and decides(n.output[0], depth)]
    weights = {i.name for i in model.graph.initializer}
    makers = {o: n for n in model.graph.node for o in n.output}
    # and the Transpose that presents a router's weight to it (float16 would otherwise round the weight there)
    feeding = [makers[i] for n in chosen for i in n.input[1:2]
               if i in makers and makers[i].op_type == "Transpose" and makers[i].input[0] in weights]
    return [n.name for n in chosen + feeding]


def share_tied_tables(model: Any) -> None:
    """An embedding table tied to the output projection is stored once: the Gather reads the int8
    copy the quantizer made of the projection (its transpose) and dequantizes the rows it picks.

    The copy is found by content (dequantized, it equals the table's transpose within half a
    quantization step), so nothing depends on the quantizer's naming beyond its scale and zero point.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    int8 = {name: t for name, t in inits.items() if t.data_type == onnx_int8() and len(t.dims) == 2}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    for node in list(model.graph.node):
        if node.op_type != "Gather" or node.input[0] not in inits or any(a.name == "axis" and a.i for a in node.attribute):
            continue
        table = inits[node.input[0]]
        if len(table.dims) != 2 or table.data_type != 1 or readers.get(table.name) != 1:
            continue
        for name, q in int8.items():
            scale, zero = inits.get(name.replace("_quantized", "_scale")), inits.get(name.replace("_quantized", "_zero_point"))
            if list(q.dims) != list(table.dims)[::-1] or scale is None or zero is None or len(scale.dims) > 0:
                continue
            s, z = float(numpy_helper.to_array(scale)), int(numpy_helper.to_array(zero))
            values = (numpy_helper.to_array(q).astype(np.float32) - z) * s
            if np.abs(values.T - numpy_helper.to_array(table)).max() > 0.5001 * s + 1e-7:
                continue
            picked = f"{node.output[0]}_int8_rows"
            at = list(model.graph.node).index(node)
            model.graph.node.remove(node)
            # the Transpose reads an initializer: onnxruntime folds it once at load time
            new = [helper.make_node("Transpose", [name], [f"{name}_rows"], name=f"{node.name}_rows", perm=[1, 0]),
                   helper.make_node("Gather", [f"{name}_rows", node.input[1]], [picked], name=f"{node.name}_int8"),
                   helper.make_node("DequantizeLinear", [picked, scale.name, zero.name], [node.output[0]],
                                    name=f"{node.name}_dequantize")]
            for k, n in enumerate(new):
                model.graph.node.insert(at + k, n)
            model.graph.initializer.remove(table)
            break


def onnx_int8() -> int:
    from onnx import TensorProto

    return TensorProto.INT8


def post_process(path: Path, graph: object, dtype: str = "float32", quantize: str | None = None) -> None:
    """Apply `--dtype float16` and/or `--quantize int8` to the file just written for ``graph``."""
    if dtype == "float16":
        to_float16(path)
    if quantize == "int8":
        quantize_int8(path)
