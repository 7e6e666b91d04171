"""Statistics along an axis: cumsum, logsumexp, var / std, and Lp normalization.

Each is written out in ONNX from primitive reductions (the way torch computes
it, not a shortcut that differs at the edges): logsumexp subtracts the max
before exponentiating, var divides by N - correction with N read from the
shape at run time, normalize divides by max(||x||_p, eps) as F.normalize.

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param
from flashc.ops.shape import normalize_axis

AXES_INPUT_SINCE = 18  # ReduceMean/Max/L1/L2 take `axes` as an input from opset 18 (ReduceSum from 13)


def reduce(tape: Any, op: str, x: str, axis: int, keepdim: bool) -> str:
    """One ONNX reduction over one axis, in the form the tape's opset wants."""
    keep = {"keepdims": int(keepdim)}
    since = 13 if op == "ReduceSum" else AXES_INPUT_SINCE
    if tape.opset < since:
        return tape.op(op, [x], {"axes": [axis], **keep})
    return tape.op(op, [x, tape.const([axis], "int64")], keep)


def _kept(x: TensorType, axis: int, keepdim: bool) -> TensorType:
    return x.with_shape(x.shape[:axis] + ((1,) if keepdim else ()) + x.shape[axis + 1:])


class Cumsum(Op):
    """Running sums along `axis`, as torch.cumsum: `x |> cumsum(axis = 1)` (int32 stays int32)."""

    examples = (
        ('ids |> cumsum', 'running totals along positions'),
        ('x |> cumsum(axis = 1)', 'prefix sums over time'),
    )

    family = "reduce"
    params = {"axis": Param(int, -1)}
    samples = ({"x": "float32[2, 5, 3]", "axis": 1}, {"x": "float32[3, 6]"}, {"x": "int32[2, 7]", "high": 50},
               {"x": "int64[2, 4, 3]", "axis": 0, "high": 50})

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.dtype in ("float32", "float64", "int32", "int64"), f"`cumsum` needs a float32/64 or int32/64 tensor, got {x}")
        normalize_axis(self, self.axis, x.rank)
        return x

    def to_torch(self, c: Lowering) -> str:
        dtype = ", dtype=torch.int32" if c.types[0].dtype == "int32" else ""  # torch widens int32 to int64
        return f"torch.cumsum({c.inputs[0]}, {self.axis}{dtype})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("CumSum", [c.inputs[0], tape.const(self.axis % c.types[0].rank, "int64")])


class Logsumexp(Op):
    """log(sum(exp(x))) along `axis`, computed stably: `scores |> logsumexp(axis = -1)`."""

    examples = (
        ('x |> logsumexp', 'log of the softmax denominator, [B, T]'),
    )

    family = "reduce"
    params = {"axis": Param(int, -1), "keepdim": Param(bool, False)}
    samples = ({"x": "float32[2, 5, 4]", "axis": 1, "input_scale": 30.0}, {"x": "float32[3, 6]", "keepdim": True})

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float, f"`logsumexp` needs a float tensor, got {x}")
        return _kept(x, normalize_axis(self, self.axis, x.rank), self.keepdim)

    def to_torch(self, c: Lowering) -> str:
        return f"torch.logsumexp({c.inputs[0]}, {self.axis}, keepdim={self.keepdim})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x = c.inputs[0]
        axis = self.axis % c.types[0].rank
        top = reduce(tape, "ReduceMax", x, axis, True)
        total = reduce(tape, "ReduceSum", tape.op("Exp", [tape.op("Sub", [x, top])]), axis, True)
        out = tape.op("Add", [tape.op("Log", [total]), top])
        return out if self.keepdim else tape.op("Squeeze", [out, tape.const([axis], "int64")])


class Var(Op):
    """The variance along `axis` with torch's `correction` (1: unbiased, 0: population): `x |> var(axis = 1)`.

    `unbiased = false` is the older spelling of `correction = 0`.
    """

    examples = (
        ('x |> var', 'unbiased (correction 1), as torch.var'),
        ('x |> var(axis = 1, correction = 0, keepdim)', 'population variance over time'),
    )

    family = "reduce"
    params = {
        "axis": Param(int, -1),
        "correction": Param(int, 1, doc="divide by N - correction", minimum=0),
        "unbiased": Param(bool, None, doc="true: correction 1, false: correction 0 (torch's older flag)"),
        "keepdim": Param(bool, False),
    }
    samples = (
        {"x": "float32[2, 5, 4]", "axis": 1},
        {"x": "float32[3, 6]", "correction": 0, "keepdim": True},
        {"x": "float32[2, 3, 7]", "unbiased": False},
        {"x": "float32[3, 5]", "axis": 0},
    )

    def _correction(self) -> int:
        if self.unbiased is None:
            return self.correction
        self.require(self.correction == 1, f"`{self.name}` takes `correction` or `unbiased`, not both")
        return int(self.unbiased)

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float, f"`{self.name}` needs a float tensor, got {x}")
        axis = normalize_axis(self, self.axis, x.rank)
        size, correction = x.shape[axis], self._correction()
        self.require(not is_static(size) or size > correction,
                     f"`{self.name}` over {size} values with correction {correction} divides by zero or less")
        return _kept(x, axis, self.keepdim)

    def to_torch(self, c: Lowering) -> str:
        return f"torch.{self.name}({c.inputs[0]}, {self.axis}, correction={self._correction()}, keepdim={self.keepdim})"

    def variance(self, tape: Any, c: Lowering) -> str:
        x, t = c.inputs[0], c.types[0]
        axis = self.axis % t.rank
        centred = tape.op("Sub", [x, reduce(tape, "ReduceMean", x, axis, True)])
        total = reduce(tape, "ReduceSum", tape.op("Mul", [centred, centred]), axis, self.keepdim)
        size = t.shape[axis]
        if is_static(size):
            count = tape.const(int(size) - self._correction(), t.dtype)
        else:
            n = tape.op("Shape", [x], {"start": axis, "end": axis + 1})
            n = tape.op("Sub", [tape.op("Squeeze", [n]), tape.const(self._correction(), "int64")])
            count = tape.op("Cast", [n], {"to": _onnx_dtype(t.dtype)})
        return tape.op("Div", [total, count])

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return self.variance(tape, c)


class Std(Var):
    """The standard deviation along `axis` with torch's `correction`: `x |> std(axis = 1, correction = 0)`."""

    examples = (
        ('x |> std(unbiased = false)', 'population standard deviation'),
    )

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Sqrt", [self.variance(tape, c)])


def _onnx_dtype(dtype: str) -> int:
    """ONNX's TensorProto number of a float dtype (written out: ops never import onnx)."""
    return {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}[dtype]


class Normalize(Op):
    """x / max(||x||_p, eps) along `axis`, as F.normalize: `emb |> normalize` gives unit L2 vectors (CLIP).

    The axis is the last one by default (F.normalize's default is dim 1).
    """

    examples = (
        ('x |> normalize', "unit L2 rows, as CLIP's embeddings"),
        ('x |> normalize(p = 1, axis = 1)', 'L1 over time'),
    )

    family = "reduce"
    params = {
        "p": Param(float, 2.0, doc="the norm's exponent", minimum=0.0),
        "axis": Param(int, -1),
        "eps": Param(float, 1e-12, doc="lower bound of the norm"),
    }
    samples = (
        {"x": "float32[2, 5, 8]"},
        {"x": "float32[2, 6, 3]", "axis": 1, "p": 1.0},
        {"x": "float32[3, 6]", "p": 3.0},
        {"x": "float32[3, 6]", "eps": 100.0},
    )

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float, f"`normalize` needs a float tensor, got {x}")
        self.require(self.p > 0, f"`normalize` needs p > 0, got {self.p}")
        normalize_axis(self, self.axis, x.rank)
        return x

    def to_torch(self, c: Lowering) -> str:
        return f"F.normalize({c.inputs[0]}, p={self.p!r}, dim={self.axis}, eps={self.eps!r})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, dtype = c.inputs[0], c.types[0].dtype
        axis = self.axis % c.types[0].rank
        if self.p == 2.0:
            norm = reduce(tape, "ReduceL2", x, axis, True)
        elif self.p == 1.0:
            norm = reduce(tape, "ReduceL1", x, axis, True)
        else:
            powered = tape.op("Pow", [tape.op("Abs", [x]), tape.const(self.p, dtype)])
            norm = tape.op("Pow", [reduce(tape, "ReduceSum", powered, axis, True), tape.const(1.0 / self.p, dtype)])
        return tape.op("Div", [x, tape.op("Max", [norm, tape.const(self.eps, dtype)])])
