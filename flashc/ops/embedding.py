"""Lookup tables: token embeddings and position indices.

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import Sym, is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import INT_DTYPES, TensorType
from flashc.ops.base import Lowering, Op, Param
from flashc.ops.constants import onnx_range, range_length, torch_range
from flashc.ops.sizes import SOURCE_AXES, SOURCES, check_sources


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
    """0, 1, ..., length - 1 as int64: the ids fed to a position embedding, `wpe(positions(T))`.

    The length is a number or any dimension expression of the inputs, read
    at run time: `positions(T)`, `positions((L - 1) // 2 + 1)` after a
    stride-2 convolution.
    """

    examples = (
        ('positions(T)', '0 .. T - 1 for a position embedding'),
        ('embedding(1500, 64)(positions((L - 1) // 2 + 1))', 'after a stride-2 conv'),
    )

    family = "embedding"
    inputs = (SOURCES,)
    params = {"length": Param("dim", doc="a number or a dimension such as T"), "source_axes": SOURCE_AXES}
    samples = (
        {"length": 7},
        {"sources": ["float32[2, 5]"], "length": Sym.name("B"), "source_axes": (("B", 0),)},
        {"sources": ["float32[2, 5]"], "length": (Sym.name("B") - 1) // 2 + 1, "source_axes": (("B", 0),)},
    )

    def infer(self, *sources: TensorType) -> TensorType:
        self.require(not is_static(self.length) or self.length >= 1, f"positions needs a length >= 1, got {self.length}")
        check_sources(self, (self.length,), len(sources))
        return TensorType("int64", (range_length(self, 0, self.length, 1),))

    def to_torch(self, c: Lowering) -> str:
        return torch_range(self, c, 0, self.length, 1, "int64")

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return onnx_range(self, tape, c, 0, self.length, 1, "int64")
