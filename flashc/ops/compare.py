"""Comparisons (`== != < <= > >=`) giving bool masks, and `and` / `or` / `not` on them.

dtype rules, the same in the checker, PyTorch and onnxruntime: both sides of a
comparison have one dtype (no promotion: onnxruntime has none, so `cast` one side);
a number on one side takes the tensor's dtype, and must be whole for an integer
tensor; bool tensors have only `==` and `!=` (onnxruntime has no ordering of bools).
`and`, `or`, `not` take bool tensors only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op
from flashc.ops.elementwise import Binary, broadcast

MASK_HINT = "a comparison gives a mask: `x > 0`, `ids == 0`"


class Compare(Binary):
    """`a (op) b` elementwise, giving bool."""

    abstract = True
    family = "compare"
    samples = (
        {"a": "float32[2, 3, 4]", "b": "float32[2, 3, 4]"},
        {"a": "float32[2, 3, 4]", "b": "float32[4]"},
        {"a": "float32[2, 3, 4]", "scalar": 0.25},
        {"a": "float32[2, 3, 4]", "scalar": -0.5, "scalar_first": True},
        {"a": "int64[2, 6]", "b": "int64[2, 6]", "high": 3},
        {"a": "int32[2, 6]", "scalar": 2.0, "high": 4},
    )
    ordered: ClassVar[bool] = True  # < <= > >= need an order; == != do not

    def infer(self, a: TensorType, b: TensorType | None = None) -> TensorType:
        for t in (a, b):
            if t is not None and t.dtype == "bool" and self.ordered:
                raise self.fail(f"`{self.symbol}` orders numbers; {t} is bool", "compare bool masks with `==` or `!=`")
        if b is None:
            self.require(self.scalar is not None, f"`{self.name}` needs two operands")
            self.require(a.is_float or float(self.scalar).is_integer(),
                         f"cannot compare the integer tensor {a} with the fraction {self.scalar}",
                         f"cast it first: `cast(x, float32) {self.symbol} {self.scalar}`")
            return a.with_dtype("bool")
        self.require(a.dtype == b.dtype, f"`{self.symbol}` compares one dtype; got {a} and {b}",
                     "cast one side first: `cast(x, float32)`")
        return a.with_shape(broadcast(self, a, b)).with_dtype("bool")


class Eq(Compare):
    """a == b."""

    symbol = "=="
    onnx_op = "Equal"
    ordered = False
    samples = (*Compare.samples, {"a": "bool[2, 5]", "b": "bool[2, 5]"}, {"a": "bool[2, 5]", "scalar": 1.0})


class Ne(Compare):
    """a != b."""

    symbol = "!="
    onnx_op = "Equal"  # then Not
    ordered = False
    samples = Eq.samples

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Not", [super().to_onnx(tape, c)])


class Lt(Compare):
    """a < b."""

    symbol = "<"
    onnx_op = "Less"


class Le(Compare):
    """a <= b."""

    symbol = "<="
    onnx_op = "LessOrEqual"


class Gt(Compare):
    """a > b."""

    symbol = ">"
    onnx_op = "Greater"


class Ge(Compare):
    """a >= b."""

    symbol = ">="
    onnx_op = "GreaterOrEqual"


class Logical(Op):
    """`a and b`, `a or b` on bool masks, broadcast."""

    abstract = True
    family = "compare"
    inputs = (Input("a"), Input("b"))
    samples = ({"a": "bool[2, 3, 4]", "b": "bool[2, 3, 4]"}, {"a": "bool[2, 3, 4]", "b": "bool[4]"})
    word: ClassVar[str] = ""
    torch_symbol: ClassVar[str] = ""
    onnx_op: ClassVar[str] = ""

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        for t in (a, b):
            self.require(t.dtype == "bool", f"`{self.word}` takes bool masks, got {t}", MASK_HINT)
        return a.with_shape(broadcast(self, a, b))

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]} {self.torch_symbol} {c.inputs[1]}"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op(self.onnx_op, list(c.inputs))


class LogicalAnd(Logical):
    """a and b: true where both masks are."""

    word, torch_symbol, onnx_op = "and", "&", "And"


class LogicalOr(Logical):
    """a or b: true where either mask is."""

    word, torch_symbol, onnx_op = "or", "|", "Or"


class LogicalNot(Op):
    """not m: flips a bool mask."""

    family = "compare"
    samples = ({"x": "bool[2, 3, 4]"},)

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.dtype == "bool", f"`not` takes a bool mask, got {x}", MASK_HINT)
        return x

    def to_torch(self, c: Lowering) -> str:
        return f"~{c.inputs[0]}"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Not", [c.inputs[0]])
