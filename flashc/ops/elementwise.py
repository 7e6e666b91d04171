"""Arithmetic between tensors (residuals `x + f(x)`, gating) and with scalars.

dtype rules, the same in the checker, PyTorch and onnxruntime: no arithmetic on
bool (a mask becomes numbers with `cast`, or picks values with `where`); two
tensors have one dtype (no promotion: onnxruntime has none, so `cast` one side);
a number takes the tensor's dtype and must be whole for an integer tensor; `/`
is for float tensors only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flashc.ir.dims import Dim
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param

BOOL_HINT = "a mask becomes numbers with `cast(m, float32)`; to choose values by it use `where(m, a, b)` or `masked_fill(x, m, value)`"


def no_bool(op: Op, symbol: str, *types: TensorType | None) -> None:
    """Arithmetic is not defined on bool: torch would promote silently, onnxruntime refuses."""
    for t in types:
        if t is not None and t.dtype == "bool":
            raise op.fail(f"`{symbol}` is arithmetic and {t} is bool", BOOL_HINT)


def broadcast(op: Op, a: TensorType, b: TensorType) -> tuple[Dim, ...]:
    """NumPy broadcasting of two shapes, with symbolic dims compared by name."""
    rank = max(a.rank, b.rank)
    left = (1,) * (rank - a.rank) + a.shape
    right = (1,) * (rank - b.rank) + b.shape
    out: list[Dim] = []
    for x, y in zip(left, right):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise op.fail(
                f"`{op.name}` cannot broadcast {a.shape_str()} with {b.shape_str()}",
                "the shapes must match, or one of them must be 1, axis by axis from the right",
            )
    return tuple(out)


class Binary(Op):
    """Elementwise ``a (op) b``; either side may be a scalar constant instead."""

    abstract = True
    family = "elementwise"
    inputs = (Input("a"), Input("b", optional=True))
    params = {
        "scalar": Param(float, None, doc="constant operand when one side is a number"),
        "scalar_first": Param(bool, False, doc="the constant is the left operand"),
    }
    samples = (
        {"a": "float32[2, 3, 4]", "b": "float32[2, 3, 4]"},
        {"a": "float32[2, 3, 4]", "b": "float32[4]"},
        {"a": "float32[2, 3, 4]", "scalar": 0.5},
        {"a": "float32[2, 3, 4]", "scalar": 2.0, "scalar_first": True},
    )
    symbol: ClassVar[str] = ""
    onnx_op: ClassVar[str] = ""

    def infer(self, a: TensorType, b: TensorType | None = None) -> TensorType:
        no_bool(self, self.symbol, a, b)
        if self.name == "div":
            self.require(a.is_float and (b is None or b.is_float), f"`/` needs float tensors, got {a}" + (f" and {b}" if b else ""),
                         "cast first: `cast(x, float32)`")
        if b is None:
            self.require(self.scalar is not None, f"`{self.name}` needs two operands")
            self.require(
                a.is_float or float(self.scalar).is_integer(),
                f"cannot combine the integer tensor {a} with the fraction {self.scalar}",
                "cast it first: `cast(x, float32)`",
            )
            return a
        self.require(
            a.dtype == b.dtype,
            f"`{self.symbol}` operands have different dtypes: {a} and {b}",
            "cast one side first: `cast(x, float32)`",
        )
        return a.with_shape(broadcast(self, a, b))

    def _operands(self, a: str, b: str | None, scalar: str) -> tuple[str, str]:
        other = b if b is not None else scalar
        return (other, a) if self.scalar_first else (a, other)

    def to_torch(self, c: Lowering) -> str:
        scalar = repr(self.scalar) if c.types[0].is_float or self.scalar is None else repr(int(self.scalar))
        left, right = self._operands(c.inputs[0], c.inputs[1], scalar)
        return f"{left} {self.symbol} {right}"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        scalar = tape.const(self.scalar, c.types[0].dtype) if c.inputs[1] is None else ""
        left, right = self._operands(c.inputs[0], c.inputs[1], scalar)
        return tape.op(self.onnx_op, [left, right])


INT_SAMPLES = ({"a": "int64[2, 6]", "b": "int64[6]", "high": 9}, {"a": "int32[2, 6]", "scalar": 3.0, "high": 9})


class Add(Binary):
    """a + b, the residual connection."""

    symbol = "+"
    onnx_op = "Add"
    samples = (*Binary.samples, *INT_SAMPLES)


class Sub(Binary):
    """a - b."""

    symbol = "-"
    onnx_op = "Sub"
    samples = (*Binary.samples, *INT_SAMPLES)


class Mul(Binary):
    """a * b, gating and scaling."""

    symbol = "*"
    onnx_op = "Mul"
    samples = (*Binary.samples, *INT_SAMPLES)


class Div(Binary):
    """a / b."""

    symbol = "/"
    onnx_op = "Div"


class Neg(Op):
    """-x."""

    family = "elementwise"
    samples = ({"x": "float32[3, 4]"}, {"x": "int64[3, 4]", "high": 9})

    def infer(self, x: TensorType) -> TensorType:
        no_bool(self, "-", x)
        return x

    def to_torch(self, c: Lowering) -> str:
        return f"-{c.inputs[0]}"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Neg", [c.inputs[0]])
