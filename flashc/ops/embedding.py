"""Lookup tables: token embeddings and position indices."""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import INT_DTYPES, TensorType
from flashc.ops.base import Input, Lowering, Op, Param


class Embedding(Op):
    """Row `i` of a learned [num, dim] table for each integer id `i`."""

    family = "embedding"
    params = {
        "num": Param(int, doc="table size (vocabulary)", minimum=1),
        "dim": Param(int, doc="vector size", minimum=1),
        "padding_idx": Param(int, None, doc="this id's row starts at zero and gets no gradient"),
        "std": Param(float, 1.0, doc="standard deviation of the initial table (torch's default 1; GPT-2 0.02)"),
    }
    samples = (
        {"x": "int64[2, 5]", "num": 11, "dim": 4, "high": 11},
        {"x": "int64[2, 5]", "num": 11, "dim": 4, "padding_idx": 0, "high": 11},
    )

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        init = ("normal", self.std) if self.padding_idx is None else ("normal", self.std, self.padding_idx % self.num)
        return {"weight": WeightSpec((self.num, self.dim), init)}

    def infer(self, x: TensorType) -> TensorType:
        self.require(
            self.padding_idx is None or -self.num <= self.padding_idx < self.num,
            f"embedding padding_idx {self.padding_idx} is outside the table of {self.num} rows",
        )
        self.require(
            x.dtype in INT_DTYPES,
            f"embedding expects integer ids, got {x}",
            "declare the input as int64[...]",
        )
        return TensorType("float32", x.shape + (self.dim,))

    def torch_module(self, x: TensorType) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"nn.Embedding({self.num}, {self.dim}{pad})"


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Gather", [c.weights["weight"], c.inputs[0]], {"axis": 0})


class Positions(Op):
    """0, 1, ..., length - 1 as int64: the ids fed to a position embedding.

    `positions(T)` with a symbolic `T` reads the length at run time from the
    input that declared `T` (the builder wires that input in as `source`).
    """

    family = "embedding"
    inputs = (Input("source", optional=True),)
    params = {"length": Param("dim"), "source_axis": Param(int, 0)}
    samples = ({"length": 7},)

    def infer(self, source: TensorType | None = None) -> TensorType:
        self.require(not is_static(self.length) or self.length >= 1, f"positions needs a length >= 1, got {self.length}")
        self.require(
            is_static(self.length) or source is not None,
            f"positions({self.length}) needs a number or a dimension of an input",
        )
        return TensorType("int64", (self.length,))

    def to_torch(self, c: Lowering) -> str:
        if c.inputs[0] is None:
            return f"torch.arange({self.length})"
        src = c.inputs[0]
        return f"torch.arange({src}.shape[{self.source_axis}], device={src}.device)"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        zero, one = tape.const(0, "int64"), tape.const(1, "int64")
        if c.inputs[0] is None:
            end = tape.const(int(self.length), "int64")
        else:
            axis = self.source_axis
            shape = tape.op("Shape", [c.inputs[0]], {"start": axis, "end": axis + 1})
            end = tape.op("Squeeze", [shape, tape.const([0], "int64")])
        return tape.op("Range", [zero, end, one])
