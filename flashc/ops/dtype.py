"""`cast(x, dtype)`: the one way to change a tensor's dtype (`cast(mask, float32)`, `cast(ids, float32)`).

The dtype is written as a bare name in that position only (`float32`, not
`"float32"`). Targets are the dtypes flashc computes and takes inputs in; half
precision is a compile-time choice (`compile --dtype float16`), not a cast.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.types import INPUT_DTYPES, TensorType
from flashc.ops.base import Lowering, Op, Param

CAST_DTYPES = INPUT_DTYPES
# onnx.TensorProto.DataType codes (the ONNX spec's numbering), so this file needs no onnx import.
ONNX_CODES = {"float32": 1, "int32": 6, "int64": 7, "bool": 9}


class Cast(Op):
    """x converted to `dtype`: floats to ints truncate toward zero, nonzero to bool is true, bool to numbers is 0/1."""

    family = "dtype"
    params = {"dtype": Param("dtype", doc=f"one of {', '.join(CAST_DTYPES)}, written bare: `cast(m, float32)`")}
    samples = (
        {"x": "bool[2, 3, 4]", "dtype": "float32"},
        {"x": "float32[2, 3, 4]", "dtype": "int64", "input_scale": 4.0},
        {"x": "float32[2, 3, 4]", "dtype": "bool"},
        {"x": "int64[2, 5]", "dtype": "float32"},
        {"x": "int64[2, 5]", "dtype": "int32", "high": 9},
        {"x": "int32[2, 5]", "dtype": "bool", "high": 3},
    )

    def infer(self, x: TensorType) -> TensorType:
        self.require(self.dtype in CAST_DTYPES, f"`cast` converts to {', '.join(CAST_DTYPES)}; got {self.dtype}",
                     "flashc computes in float32; for half precision compile with `--dtype float16`")
        return x.with_dtype(self.dtype)

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]}.to(torch.{self.dtype})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Cast", [c.inputs[0]], {"to": ONNX_CODES[self.dtype]})
