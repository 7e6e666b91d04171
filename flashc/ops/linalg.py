"""Dense layers: linear (the fully connected layer) and matmul."""

from __future__ import annotations

import math
from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param


def linear_weights(in_f: int, out_f: int, bias: bool) -> dict[str, WeightSpec]:
    """nn.Linear's layout and default initialisation (kaiming-uniform, a = sqrt 5)."""
    bound = 1 / math.sqrt(in_f) if in_f else 0.0
    w = {"weight": WeightSpec((out_f, in_f), ("uniform", bound))}
    if bias:
        w["bias"] = WeightSpec((out_f,), ("uniform", bound))
    return w


def onnx_linear(tape: Any, x: str, weight: str, bias: str | None, rank: int) -> str:
    """y = x W^T + b, as one Gemm for matrices, MatMul + Add otherwise."""
    if rank == 2:
        return tape.op("Gemm", [x, weight] + ([bias] if bias else []), {"transB": 1})
    y = tape.op("MatMul", [x, tape.op("Transpose", [weight], {"perm": [1, 0]})])
    return tape.op("Add", [y, bias]) if bias else y


class Linear(Op):
    """y = x W^T + b over the last axis; `weight = other.weight` ties weights."""

    family = "linalg"
    params = {
        "out_features": Param(int, doc="size of the output's last axis", minimum=1),
        "bias": Param(bool, True),
    }
    tieable = ("weight",)
    samples = ({"x": "float32[4, 8]", "out_features": 5}, {"x": "float32[2, 3, 8]", "out_features": 6})

    def _in_features(self, x: TensorType) -> int:
        self.require(x.rank >= 1, f"linear needs at least one axis, got {x}")
        last = x.shape[-1]
        hint = "insert `flatten` before `linear`" if x.rank > 2 else None
        self.require(is_static(last), f"linear needs a fixed last axis, got {x.shape_str()}", hint)
        return int(last)

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        return linear_weights(self._in_features(x), self.out_features, self.bias)

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float, f"linear needs a float tensor, got {x}", "embed integer ids with `embedding`")
        self.require(self.out_features > 0, f"linear needs out_features > 0, got {self.out_features}")
        self._in_features(x)
        return x.with_shape(x.shape[:-1] + (self.out_features,))

    def torch_module(self, x: TensorType) -> str:
        return f"nn.Linear({self._in_features(x)}, {self.out_features}, bias={self.bias})"


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return onnx_linear(tape, c.inputs[0], c.weights["weight"], c.weights.get("bias"), c.types[0].rank)


class Matmul(Op):
    """a @ b with batch broadcasting."""

    family = "linalg"
    inputs = (Input("a"), Input("b"))
    samples = ({"a": "float32[2, 3, 4]", "b": "float32[2, 4, 5]"}, {"a": "float32[3, 4]", "b": "float32[4, 2]"})

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        from flashc.ops.elementwise import broadcast

        self.require(a.rank >= 2 and b.rank >= 2, f"matmul needs two matrices, got {a} and {b}")
        self.require(
            a.shape[-1] == b.shape[-2],
            f"matmul inner dimensions differ: {a.shape_str()} @ {b.shape_str()}",
        )
        batch = broadcast(self, a.with_shape(a.shape[:-2]), b.with_shape(b.shape[:-2]))
        return a.with_shape(batch + (a.shape[-2], b.shape[-1]))

    def to_torch(self, c: Lowering) -> str:
        return f"torch.matmul({c.inputs[0]}, {c.inputs[1]})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("MatMul", c.inputs[:2])
