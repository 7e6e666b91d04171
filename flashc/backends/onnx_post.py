"""Post-passes on a written ONNX file, done by onnxruntime's own tools.

float16 export uses onnxruntime's float16 converter (inputs and outputs stay
float32, so callers feed the same arrays); ops onnxruntime has no float16 CPU
kernel for (recurrent layers, Scan steps, ScatterND's add) stay float32 with
their whole layer, and so do decision layers (a router's MatMul feeding TopK).
int8 stores MatMul weights as int8 with a scale per output column, dequantized
into float32 products (weight-only), after onnxruntime's pre-processing pass
folds the weight transposes; decision layers stay float32, and an embedding
table tied to the output projection is stored once, as the projection's int8
copy.
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
    """int8 weights for MatMul/Gemm, one scale per output column, dequantized into a float32 product.

    Weight-only: activations stay float32, so GPT-2 small's next token agrees with float32 at 0.943
    of positions (transformers' seeded weights; 0.977 with flashc's) where onnxruntime's dynamic
    quantization (uint8 activations) gave 0.898, and
    onnxruntime runs DequantizeLinear + MatMul of an int8 initializer as one int8 product (faster
    than float32). Decision layers stay float32; an embedding table tied to the output projection
    keeps no float32 copy (its rows are read from an int8 copy).
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger().setLevel(logging.ERROR)  # the pre-processor logs advice through the root logger
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)  # folds weight transposes
        model = onnx.load(str(prepared))
    quantize_weights(model, set(decision_layers(model)))
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


def quantize_weights(model: Any, keep: set[str]) -> None:
    """Replace each float32 MatMul/Gemm weight (an initializer, not in ``keep``) with int8 and a scale per output."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    done: dict[str, str] = {}
    for node in list(model.graph.node):
        name = node.input[1] if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else None
        if name is None or node.name in keep or name not in inits or inits[name].data_type != TensorProto.FLOAT \
                or len(inits[name].dims) != 2:
            continue
        # the output axis of the weight: N of [K, N], or of Gemm's transposed [N, K]
        axis = 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
        if name not in done:
            w = numpy_helper.to_array(inits[name])
            scale = (np.abs(w).max(axis=1 - axis) / 127).astype(np.float32)
            scale[scale == 0] = 1.0
            q = np.clip(np.round(w / np.expand_dims(scale, 1 - axis)), -127, 127).astype(np.int8)
            model.graph.initializer.remove(inits[name])
            at = list(model.graph.node).index(node)
            weight = f"{name}_int8"
            model.graph.initializer.append(numpy_helper.from_array(scale, f"{name}_scale"))
            model.graph.initializer.append(numpy_helper.from_array(q, weight))
            table = _tied_table(model, w, inits, readers) if axis == 1 else None
            if table is not None:
                # the float32 table goes; the Gather reads the same int8 numbers laid out by rows. (One shared
                # initializer would be smaller, but onnxruntime then runs DequantizeLinear at every call
                # instead of its int8 product: 20x slower.)
                model.graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(q.T), f"{table}_int8"),
                                                numpy_helper.from_array(scale, f"{table}_scale")])
                _read_int8_table(model, table, f"{table}_scale", readers[table][0])
                at = list(model.graph.node).index(node)
            model.graph.node.insert(at, helper.make_node("DequantizeLinear", [weight, f"{name}_scale"],
                                                         [f"{name}_dequantized"], name=f"{name}_dequantize",
                                                         axis=axis))
            done[name] = f"{name}_dequantized"
        node.input[1] = done[name]


def _tied_table(model: Any, w: Any, inits: dict[str, Any], readers: dict[str, list[Any]]) -> str | None:
    """The float32 Gather table (axis 0, its only reader) equal to ``w``'s transpose, removed; or None.

    GPT-2's wte is the embedding and, tied, the output projection: no float32 copy is kept."""
    import numpy as np
    from onnx import numpy_helper

    for table in list(inits.values()):
        users = readers.get(table.name, [])
        if list(table.dims) != list(w.shape)[::-1] or len(users) != 1 or users[0].op_type != "Gather" \
                or any(a.name == "axis" and a.i for a in users[0].attribute) or table not in model.graph.initializer:
            continue
        if np.array_equal(numpy_helper.to_array(table), w.T):
            model.graph.initializer.remove(table)
            return table.name
    return None


def _read_int8_table(model: Any, table: str, scale: str, gather: Any) -> None:
    """The Gather picks int8 rows of the table and dequantizes them, each with its row's scale."""
    import numpy as np
    from onnx import helper, numpy_helper

    out, ids = gather.output[0], gather.input[1]
    at = list(model.graph.node).index(gather)
    model.graph.node.remove(gather)
    new = [helper.make_node("Gather", [f"{table}_int8", ids], [f"{out}_int8"], name=f"{gather.name}_int8"),
           helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], name=f"{gather.name}_float", to=1),
           helper.make_node("Gather", [scale, ids], [f"{out}_scales"], name=f"{gather.name}_scales"),
           helper.make_node("Unsqueeze", [f"{out}_scales", f"{out}_last_axis"], [f"{out}_scale"],
                            name=f"{gather.name}_scale"),
           helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{gather.name}_dequantize")]
    for k, n in enumerate(new):
        model.graph.node.insert(at + k, n)
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), f"{out}_last_axis"))


def post_process(path: Path, graph: object, dtype: str = "float32", quantize: str | None = None) -> None:
    """Apply `--dtype float16` and/or `--quantize int8` to the file just written for ``graph``."""
    if dtype == "float16":
        to_float16(path)
    if quantize == "int8":
        quantize_int8(path)
