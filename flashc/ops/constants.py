"""Tensors made from sizes alone: zeros / ones / full, arange, and fixed sinusoidal position tables.

Their sizes may be any dimension expression over the model's inputs:
`zeros(B, d)` for an initial hidden state, `arange(T)`, or
`sinusoidal((L - 1) // 2 + 1, d)` after a stride-2 convolution (Whisper).
The builder wires in the inputs those names come from (see ops/sizes.py),
so the ONNX graph reads them with `Shape` and the PyTorch module with
`x.shape[i]`, and the constant is made on the device of that input.

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from flashc.ir.dims import Dim, Sym, is_static
from flashc.ir.types import TensorType
from flashc.ops.base import MAX_COUNT, Lowering, Op, Param
from flashc.ops.sizes import (
    SOURCE_AXES,
    SOURCES,
    check_sources,
    onnx_scalar,
    onnx_shape,
    torch_device,
    torch_shape,
    torch_size,
)

CONSTANT_DTYPES = ("float32", "float64", "int64", "int32", "bool")
ARANGE_DTYPES = ("int64", "int32", "float32", "float64")
B = Sym.name("B")  # the parity table's batch dim: samples with sizes read at run time use it


class Filled(Op):
    """A tensor of the given shape with every element equal to one value."""

    abstract = True
    family = "constant"
    inputs = (SOURCES,)
    fill: ClassVar[float] = 0.0

    def value_of(self) -> float:
        return self.fill

    def infer(self, *sources: TensorType) -> TensorType:
        dims = tuple(self.shape)
        self.require(len(dims) >= 1, f"`{self.name}` needs at least one dimension, e.g. `{self.name}(B, d)`")
        self.require(all(not is_static(d) or d >= 1 for d in dims), f"`{self.name}` dims must be >= 1, got {list(dims)}")
        check_sources(self, dims, len(sources))
        self.require(self.dtype in CONSTANT_DTYPES, f"`{self.name}` makes {', '.join(CONSTANT_DTYPES)} tensors, got {self.dtype}")
        value = self.value_of()
        if self.dtype == "bool":
            self.require(value in (0, 1), f"a bool `{self.name}` holds 0 or 1 (false or true), got {value}")
        elif self.dtype.startswith("int"):
            self.require(float(value).is_integer(), f"an integer `{self.name}` needs a whole-number value, got {value}")
        return TensorType(self.dtype, dims)

    def _literal(self) -> Any:
        value = self.value_of()
        return bool(value) if self.dtype == "bool" else int(value) if self.dtype.startswith("int") else float(value)

    def to_torch(self, c: Lowering) -> str:
        dims, dtype = torch_shape(self, tuple(self.shape), c), f"dtype=torch.{self.dtype}{torch_device(self, c)}"
        if type(self) is Full:
            return f"torch.full({dims}, {self._literal()!r}, {dtype})"
        return f"torch.{self.name}({dims}, {dtype})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Expand", [tape.const(self._literal(), self.dtype), onnx_shape(self, tape, tuple(self.shape), c)])


_SHAPE = Param("shape", doc="the dims, e.g. zeros(B, d); symbolic dims of the inputs are read at run time")
_DTYPE = Param("dtype", "float32", doc=f"one of {', '.join(CONSTANT_DTYPES)}, written bare: `dtype = int64`")


class Zeros(Filled):
    """A tensor of zeros, e.g. an initial recurrent state `h0 = zeros(B, hidden)`."""

    examples = (
        ('zeros(B, 64)', 'an initial hidden state, as big as the batch'),
    )

    params = {"shape": _SHAPE, "dtype": _DTYPE, "source_axes": SOURCE_AXES}
    samples = (
        {"shape": (3, 4)},
        {"sources": ["float32[2, 5]"], "shape": (B, 4), "source_axes": (("B", 0),)},
        {"sources": ["float32[2, 5]"], "shape": (B * 2 + 1,), "dtype": "int64", "source_axes": (("B", 0),)},
    )


class Ones(Filled):
    """A tensor of ones, e.g. a mask to cut a triangle from: `ones(T, T, dtype = bool) |> tril`."""

    examples = (
        ('ones(T, T, dtype = bool)', 'all true, [T, T]'),
    )

    fill = 1.0
    params = {"shape": _SHAPE, "dtype": _DTYPE, "source_axes": SOURCE_AXES}
    samples = (
        {"shape": (2, 3)},
        {"sources": ["float32[2, 5]"], "shape": (B, B), "dtype": "bool", "source_axes": (("B", 0),)},
    )


class Full(Filled):
    """A tensor filled with `value`: `full(B, d, value = 0.5)` (the value is named; the dims come first)."""

    examples = (
        ('full(B, 1, 64, value = 0.5)', 'filled with 0.5'),
    )

    params = {"shape": _SHAPE, "value": Param(float, doc="the fill value"), "dtype": _DTYPE, "source_axes": SOURCE_AXES}
    samples = (
        {"shape": (2, 3), "value": -1.5},
        {"sources": ["float32[2, 5]"], "shape": ((B - 1) // 2 + 1, 3), "value": 7, "dtype": "int32", "source_axes": (("B", 0),)},
    )

    def value_of(self) -> float:
        return self.value


def range_length(op: Op, start: int, end: Dim, step: int) -> Dim:
    """len(range(start, end, step)), symbolic when `end` is: (end - start + step - 1) // step."""
    op.require(step >= 1, f"`{op.name}` step must be >= 1, got {step}")
    if is_static(end):
        length = len(range(start, int(end), step))
        op.require(length >= 1, f"`{op.name}` from {start} to {end} is empty")
        return length
    return (end - start + (step - 1)) // step


def torch_range(op: Op, c: Lowering, start: int, end: Dim, step: int, dtype: str) -> str:
    args = ([repr(start)] if start or step != 1 else []) + [torch_size(op, end, c)] + ([repr(step)] if step != 1 else [])
    return f"torch.arange({', '.join(args)}, dtype=torch.{dtype}{torch_device(op, c)})"


def onnx_range(op: Op, tape: Any, c: Lowering, start: int, end: Dim, step: int, dtype: str) -> str:
    ids = tape.op("Range", [tape.const(start, "int64"), onnx_scalar(op, tape, end, c), tape.const(step, "int64")])
    return ids if dtype == "int64" else tape.op("Cast", [ids], {"to": ONNX_DTYPE[dtype]})


ONNX_DTYPE = {"float32": 1, "int32": 6, "int64": 7, "float64": 11}  # TensorProto numbers: ops never import onnx


class Arange(Op):
    """start, start + step, ... below `end`, as torch.arange: `arange(T)`, `arange(T, start = 1, step = 2)`.

    `end` comes first and may be any dimension expression of the inputs; the
    result is int64 unless `dtype` says float32.
    """

    examples = (
        ('arange(T)', '0 .. T - 1, int64'),
        ('arange(T, start = 1, step = 2, dtype = float32)', 'odd positions as floats'),
    )

    family = "constant"
    inputs = (SOURCES,)
    params = {
        "end": Param("dim", doc="exclusive end: a number or a dimension such as T or (L - 1) // 2 + 1"),
        "start": Param(int, 0),
        "step": Param(int, 1),
        "dtype": Param("dtype", "int64", doc=f"one of {', '.join(ARANGE_DTYPES)}, written bare"),
        "source_axes": SOURCE_AXES,
    }
    samples = (
        {"end": 7},
        {"end": 9, "start": 2, "step": 3, "dtype": "float32"},
        {"sources": ["float32[2, 5]"], "end": B, "source_axes": (("B", 0),)},
        {"sources": ["float32[2, 5]"], "end": B * 3 - 1, "start": 1, "step": 2, "dtype": "float32", "source_axes": (("B", 0),)},
    )

    def infer(self, *sources: TensorType) -> TensorType:
        self.require(self.dtype in ARANGE_DTYPES, f"`arange` makes {', '.join(ARANGE_DTYPES)} tensors, got {self.dtype}")
        check_sources(self, (self.end,), len(sources))
        return TensorType(self.dtype, (range_length(self, self.start, self.end, self.step),))

    def to_torch(self, c: Lowering) -> str:
        return torch_range(self, c, self.start, self.end, self.step, self.dtype)

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return onnx_range(self, tape, c, self.start, self.end, self.step, self.dtype)


TORCH_SINUSOIDAL = '''
class SinusoidalTable:
    """A fixed [length, dim] table of sines and cosines of position * frequency."""

    @staticmethod
    def make(length, dim, rate, halves, device=None):
        # frequencies exp(-rate * i) in float64, rounded once to float32 (as the ONNX graph stores them)
        inv = torch.exp(-rate * torch.arange(dim // 2, dtype=torch.float64)).float().to(device)
        angles = torch.arange(length, device=device).float()[:, None] * inv[None, :]
        if halves:
            return torch.cat([angles.sin(), angles.cos()], dim=1)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(length, dim)
'''


class Sinusoidal(Op):
    """The fixed sin/cos position table [length, dim]: `h = x + sinusoidal(T, d)`.

    `layout = "interleaved"` is the Transformer paper's: sin(pos / base^(2i/dim)) at
    even columns 2i, cos at odd ones. `layout = "halves"` is Whisper's `sinusoids`
    (and fairseq's): all sines then all cosines, with frequencies
    exp(-ln(base) * i / (dim/2 - 1)). The length may be any dimension
    expression of the inputs.
    """

    examples = (
        ('x + sinusoidal(T, 64)', "the Transformer paper's position table"),
        ('(mel |> conv1d(64, 3, stride = 2, padding = 1) |> transpose(1, 2)) + sinusoidal((L - 1) // 2 + 1, 64, layout = "halves")',
         "Whisper's audio encoder input"),
    )

    family = "constant"
    inputs = (SOURCES,)
    params = {
        "length": Param("dim", doc="rows: a number or a dimension such as T"),
        "dim": Param(int, doc="columns (even)", minimum=2, maximum=100 * MAX_COUNT),  # its ONNX table is a list
        "base": Param(float, 10000.0, doc="the longest wavelength is 2 pi base"),
        "layout": Param(str, "interleaved", choices=("interleaved", "halves")),
        "source_axes": SOURCE_AXES,
    }
    torch_prelude = (TORCH_SINUSOIDAL,)
    samples = (
        {"length": 6, "dim": 8},
        {"length": 5, "dim": 6, "layout": "halves", "base": 100.0},
        {"sources": ["float32[2, 5]"], "length": B * 4, "dim": 8, "source_axes": (("B", 0),)},
        {"sources": ["float32[2, 5]"], "length": (B - 1) // 2 + 1, "dim": 10, "layout": "halves", "source_axes": (("B", 0),)},
    )

    def rate(self) -> float:
        half = self.dim // 2
        return math.log(self.base) / (half - 1) if self.layout == "halves" else 2 * math.log(self.base) / self.dim

    def infer(self, *sources: TensorType) -> TensorType:
        self.require(self.dim % 2 == 0, f"`sinusoidal` needs an even dim (sine and cosine pairs), got {self.dim}")
        self.require(self.layout != "halves" or self.dim >= 4, f"`sinusoidal` with layout \"halves\" needs dim >= 4, got {self.dim}")
        self.require(self.base > 0, f"`sinusoidal` base must be > 0, got {self.base}")
        self.require(not is_static(self.length) or self.length >= 1, f"`sinusoidal` length must be >= 1, got {self.length}")
        check_sources(self, (self.length,), len(sources))
        return TensorType("float32", (self.length, self.dim))

    def to_torch(self, c: Lowering) -> str:
        device = torch_device(self, c).removeprefix(", device=") or "None"
        halves = self.layout == "halves"
        return f"SinusoidalTable.make({torch_size(self, self.length, c)}, {self.dim}, {self.rate()!r}, {halves}, {device})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        half = self.dim // 2
        inv = tape.const([[math.exp(-self.rate() * i) for i in range(half)]], "float32")
        positions = onnx_range(self, tape, c, 0, self.length, 1, "float32")
        angles = tape.op("Mul", [tape.op("Unsqueeze", [positions, tape.const([1], "int64")]), inv])
        sin, cos = tape.op("Sin", [angles]), tape.op("Cos", [angles])
        if self.layout == "halves":
            return tape.op("Concat", [sin, cos], {"axis": 1})
        last = tape.const([2], "int64")
        pairs = tape.op("Concat", [tape.op("Unsqueeze", [sin, last]), tape.op("Unsqueeze", [cos, last])], {"axis": 2})
        return tape.op("Reshape", [pairs, tape.const([-1, self.dim], "int64")])
