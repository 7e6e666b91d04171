"""Choosing values by a bool mask: `where(cond, a, b)` and `masked_fill(x, mask, value)`.

The mask must be bool (a comparison gives one); the values have one dtype, and a
number takes the dtype of the tensor beside it (whole numbers only for integer
tensors), so PyTorch and onnxruntime compute in the same dtype.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.elementwise import broadcast

MASK_HINT = "a comparison gives a mask: `where(x > 0, x, 0.0)`"


def _literal(value: float, t: TensorType) -> str:
    """A number as PyTorch should see it beside a tensor of type ``t`` (an int stays an int)."""
    return repr(float(value)) if t.is_float else repr(int(value))


def _whole(op: Op, value: float, t: TensorType) -> None:
    op.require(t.is_float or float(value).is_integer(),
               f"`{op.name}` cannot put the fraction {value} in the integer tensor {t}", "cast it first: `cast(x, float32)`")


class Where(Op):
    """Elementwise choice: `a` where `cond` is true, else `b`; either may be a number (`where(pad, -1e9, scores)`)."""

    family = "select"
    inputs = (Input("cond"), Input("a", optional=True), Input("b", optional=True))
    params = {
        "a_value": Param(float, None, doc="the number chosen where cond is true (instead of a tensor `a`)"),
        "b_value": Param(float, None, doc="the number chosen where cond is false (instead of a tensor `b`)"),
    }
    # A number given in a tensor slot fills this setting instead: where(m, x, 0.0), where(m, -1e9, x).
    scalar_inputs: ClassVar[dict[str, str]] = {"a": "a_value", "b": "b_value"}
    samples = (
        {"cond": "bool[2, 3, 4]", "a": "float32[2, 3, 4]", "b": "float32[2, 3, 4]"},
        {"cond": "bool[2, 1, 4]", "a": "float32[2, 3, 4]", "b": "float32[4]"},
        {"cond": "bool[2, 3, 4]", "a": "float32[2, 3, 4]", "b_value": 0.0},
        {"cond": "bool[2, 3, 4]", "a_value": -1e9, "b": "float32[2, 3, 4]"},
        {"cond": "bool[2, 5]", "a": "int64[2, 5]", "b_value": -1.0},
        {"cond": "bool[2, 5]", "a_value": 1.0, "b_value": 0.0},
    )

    def infer(self, cond: TensorType, a: TensorType | None = None, b: TensorType | None = None) -> TensorType:
        self.require(cond.dtype == "bool", f"`where` chooses by a bool mask; `cond` is {cond}", MASK_HINT)
        for name, t, value in (("a", a, self.a_value), ("b", b, self.b_value)):
            self.require((t is None) != (value is None), f"`where` needs `{name}`: a tensor or a number")
        shape = cond.shape
        tensors = [t for t in (a, b) if t is not None]
        for t in tensors:
            shape = broadcast(self, TensorType("bool", shape), t)
        if len(tensors) == 2:
            self.require(a.dtype == b.dtype, f"`where` chooses between one dtype; got {a} and {b}",
                         "cast one side first: `cast(x, float32)`")
        dtype = tensors[0].dtype if tensors else "float32"
        self.require(dtype != "bool", f"`where` chooses numbers; the values are {tensors[0] if tensors else dtype}",
                     "choose between masks with `and` / `or`: `(c and a) or (not c and b)`")  # onnxruntime has no bool Where
        out = TensorType(dtype, shape)
        for value in (self.a_value, self.b_value):
            if value is not None:
                _whole(self, value, out)
        return out

    def to_torch(self, c: Lowering) -> str:
        t = c.out_types[0]
        a = c.inputs[1] if c.inputs[1] is not None else _literal(self.a_value, t)
        b = c.inputs[2] if c.inputs[2] is not None else _literal(self.b_value, t)
        if c.inputs[1] is None and c.inputs[2] is None:  # two numbers: torch would pick float32 itself, say so
            a = f"torch.tensor({a}, dtype=torch.{t.dtype}, device={c.inputs[0]}.device)"
        return f"torch.where({c.inputs[0]}, {a}, {b})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        dtype = c.out_types[0].dtype
        a = c.inputs[1] if c.inputs[1] is not None else tape.const(self.a_value, dtype)
        b = c.inputs[2] if c.inputs[2] is not None else tape.const(self.b_value, dtype)
        return tape.op("Where", [c.inputs[0], a, b])


class MaskedFill(Op):
    """`x` with `value` where `mask` is true (`scores |> masked_fill(pad, -1e9)`); the mask broadcasts to `x`."""

    family = "select"
    inputs = (Input("x"), Input("mask"))
    params = {"value": Param(float, doc="the number written where the mask is true")}
    samples = (
        {"x": "float32[2, 3, 4]", "mask": "bool[2, 3, 4]", "value": -1e9},
        {"x": "float32[2, 3, 4]", "mask": "bool[2, 1, 4]", "value": 0.5},
        {"x": "int64[2, 5]", "mask": "bool[5]", "value": -1.0},
    )

    def infer(self, x: TensorType, mask: TensorType) -> TensorType:
        self.require(mask.dtype == "bool", f"`masked_fill` needs a bool mask; got {mask}", MASK_HINT)
        self.require(x.dtype != "bool", f"`masked_fill` fills numbers; {x} is bool", "combine masks with `and` / `or`")
        self.require(broadcast(self, x, mask) == x.shape,
                     f"`masked_fill` mask {mask.shape_str()} must broadcast to x {x.shape_str()} without growing it")
        _whole(self, self.value, x)
        return x

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]}.masked_fill({c.inputs[1]}, {_literal(self.value, c.types[0])})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Where", [c.inputs[1], tape.const(self.value, c.types[0].dtype), c.inputs[0]])
