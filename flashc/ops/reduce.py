"""Reductions over an axis (mean pooling over a sequence)."""

from __future__ import annotations

from typing import Any

from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param
from flashc.ops.shape import normalize_axis


class Mean(Op):
    """The mean over `axis`; `keepdim` keeps it as size 1."""

    family = "reduce"
    params = {"axis": Param(int, -1), "keepdim": Param(bool, False)}
    samples = ({"x": "float32[2, 5, 4]", "axis": 1}, {"x": "float32[3, 4]", "keepdim": True})

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float, f"mean needs a float tensor, got {x}")
        axis = normalize_axis(self, self.axis, x.rank)
        shape = x.shape[:axis] + ((1,) if self.keepdim else ()) + x.shape[axis + 1:]
        return x.with_shape(shape)

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]}.mean({self.axis}, keepdim={self.keepdim})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        if tape.opset < 18:  # axes became an input in opset 18
            return tape.op("ReduceMean", [c.inputs[0]], {"axes": [self.axis], "keepdims": int(self.keepdim)})
        axes = tape.const([self.axis], "int64")
        return tape.op("ReduceMean", [c.inputs[0], axes], {"keepdims": int(self.keepdim)})
