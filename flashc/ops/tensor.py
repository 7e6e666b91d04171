"""Tensor plumbing: learned tensors, split / chunk / slice, and sum / max / min reductions.

`cls = parameter(1, 1, d)` is a learned tensor with no input (a class token,
a position table); `a, b = x |> split(3, 5, axis = 1)` and `q, k, v = x |>
chunk(3)` have several outputs; `x |> slice(1, -1, axis = 1)` keeps a range.

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flashc.ir.dims import Dim, Sym, is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import MAX_COUNT, Input, Lowering, Op, Param
from flashc.ops.shape import normalize_axis
from flashc.ops.sizes import SOURCE_AXES, SOURCES, check_sources, onnx_size, torch_size

TORCH_PARAMETER = '''
class LearnedTensor(nn.Module):
    """A learned tensor with no input (a class token, a position table)."""

    def __init__(self, *shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*shape))

    def forward(self):
        return self.weight
'''

# An `end` at least this large means "to the end of the axis", as in Python.
TO_END = 2**31 - 1


class Parameter(Op):
    """A learned float32 tensor of a fixed shape: `cls = parameter(1, 1, d)`, `gamma = parameter(d, init = "ones")`.

    Its starting values: `init = "normal"` draws N(0, std) (std 0.02 by
    default, as for BERT's and ViT's class tokens and position tables),
    `"zeros"` and `"ones"` fill, `"constant"` fills with `value` (a layer
    scale of 1e-6), `"uniform"` draws from [lower, upper) as nn.init.uniform_.
    """

    examples = (
        ('parameter(1, 1, 64)', 'a class token, N(0, 0.02)'),
        ('parameter(64, init = "ones")', 'a learned scale'),
        ('parameter(64, init = "constant", value = 1e-6)', 'a layer scale (CaiT)'),
        ('parameter(64, init = "uniform", lower = -0.1, upper = 0.1)', 'uniform in [-0.1, 0.1)'),
    )

    family = "tensor"
    inputs = ()
    params = {
        "shape": Param("shape", doc="the dims, e.g. parameter(1, 1, d)"),
        "init": Param(str, "normal", choices=("normal", "zeros", "ones", "constant", "uniform")),
        "std": Param(float, 0.02, doc="standard deviation of the normal init", minimum=0.0),
        "value": Param(float, 0.0, doc="the value of the constant init"),
        "lower": Param(float, 0.0, doc="lower end of the uniform init"),
        "upper": Param(float, 1.0, doc="upper end of the uniform init"),
    }
    torch_prelude = (TORCH_PARAMETER,)
    samples = (
        {"shape": (1, 1, 8)},
        {"shape": (5, 4), "init": "zeros"},
        {"shape": (3,), "init": "ones"},
        {"shape": (2, 3), "init": "constant", "value": 0.25},
        {"shape": (4, 2), "init": "uniform", "lower": -2.0, "upper": -1.0},
    )

    def _shape(self) -> tuple[int, ...]:
        self.require(
            len(self.shape) >= 1 and all(is_static(d) and int(d) >= 1 for d in self.shape),
            f"parameter needs positive whole-number dims, got {list(self.shape)}",
            "a learned tensor cannot have a symbolic size; slice a larger table instead",
        )
        return tuple(int(d) for d in self.shape)

    def weights(self) -> dict[str, WeightSpec]:
        self.require(self.init != "uniform" or self.lower < self.upper,
                     f"parameter's uniform init needs lower < upper, got lower = {self.lower}, upper = {self.upper}")
        init = {"normal": ("normal", self.std), "constant": ("constant", self.value),
                "uniform": ("uniform", self.lower, self.upper)}.get(self.init, (self.init,))
        return {"weight": WeightSpec(self._shape(), init)}

    def infer(self) -> TensorType:
        return TensorType("float32", self._shape())

    def torch_module(self) -> str:
        return f"LearnedTensor({', '.join(str(d) for d in self._shape())})"

    def to_torch(self, c: Lowering) -> str:
        return f"{c.module}()"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Identity", [c.weights["weight"]])


def _fixed_axis(op: Op, x: TensorType, axis: int) -> tuple[int, int]:
    """The normalized axis and its size, which must be a number."""
    a = normalize_axis(op, axis, x.rank)
    op.require(
        is_static(x.shape[a]),
        f"`{op.name}` needs a fixed size along axis {axis}, but {x} has {x.shape[a]} there",
    )
    return a, int(x.shape[a])


def _parts(x: TensorType, axis: int, sizes: list[int]) -> tuple[TensorType, ...]:
    return tuple(x.with_shape(x.shape[:axis] + (n,) + x.shape[axis + 1:]) for n in sizes)


class Split(Op):
    """Cut `axis` into consecutive parts of the given sizes: `a, b = x |> split(3, 5, axis = 1)`."""

    family = "tensor"
    params = {
        "sizes": Param("shape", doc="the size of each part, in order; they add up to the axis"),
        "axis": Param(int, -1),
    }
    samples = ({"x": "float32[2, 8]", "sizes": (3, 5)}, {"x": "float32[2, 6, 4]", "sizes": (1, 2, 3), "axis": 1})

    def _sizes(self, x: TensorType) -> tuple[int, list[int]]:
        axis, length = _fixed_axis(self, x, self.axis)
        sizes = [int(s) if is_static(s) else -1 for s in self.sizes]
        self.require(len(sizes) >= 2, f"split needs at least two sizes, got {list(self.sizes)}")
        self.require(
            all(s >= 1 for s in sizes) and sum(sizes) == length,
            f"split sizes {list(self.sizes)} must be positive and add up to {length}, the size of axis {self.axis} of {x}",
        )
        return axis, sizes

    def infer(self, x: TensorType) -> tuple[TensorType, ...]:
        return _parts(x, *self._sizes(x))

    def to_torch(self, c: Lowering) -> str:
        axis, sizes = self._sizes(c.types[0])
        return f"torch.split({c.inputs[0]}, {sizes!r}, dim={axis})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        axis, sizes = self._sizes(c.types[0])
        return tape.op("Split", [c.inputs[0], tape.const(sizes, "int64")], {"axis": axis}, outputs=len(sizes))


class Chunk(Op):
    """`n` parts of `axis` as torch.chunk cuts them: ceil(size / n) each, the last one smaller."""

    family = "tensor"
    params = {"n": Param(int, doc="number of parts", maximum=MAX_COUNT), "axis": Param(int, -1)}
    samples = ({"x": "float32[2, 9]", "n": 3}, {"x": "float32[2, 7, 4]", "n": 2, "axis": 1})

    def _sizes(self, x: TensorType) -> tuple[int, list[int]]:
        axis, length = _fixed_axis(self, x, self.axis)
        self.require(2 <= self.n <= length, f"chunk needs 2 <= n <= {length} (the size of axis {self.axis}), got n={self.n}")
        step = -(-length // self.n)
        sizes = [min(step, length - start) for start in range(0, length, step)]
        self.require(
            len(sizes) == self.n,
            f"chunk({self.n}) of an axis of size {length} gives {len(sizes)} parts of at most {step}, as torch.chunk does",
            f"use `split` with explicit sizes, or a size divisible by {self.n}",
        )
        return axis, sizes

    def infer(self, x: TensorType) -> tuple[TensorType, ...]:
        return _parts(x, *self._sizes(x))

    def to_torch(self, c: Lowering) -> str:
        axis, _ = self._sizes(c.types[0])
        return f"torch.chunk({c.inputs[0]}, {self.n}, dim={axis})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        axis, sizes = self._sizes(c.types[0])
        return tape.op("Split", [c.inputs[0], tape.const(sizes, "int64")], {"axis": axis}, outputs=len(sizes))


class Slice(Op):
    """Elements `start` to `end` (exclusive) of `axis`, every `step`-th, as Python slices.

    Negative indices count from the end; without `end` the slice runs to the
    end of the axis, and an `end` past a fixed-size axis stops at it. `end`
    may be any dimension expression of the inputs, read at run time, e.g. a
    learned position table cut to the sequence length: `parameter(1, ctx, d)
    |> slice(0, T, axis = 1)` (the table must be at least T long at run time),
    or `slice(0, (T - 1) // 2 + 1)`. On a symbolic axis such as T
    the output length assumes the axis holds the indices given:
    `slice(0, 3)` is 3 long, `slice(1, -1)` is T - 2, `slice(-3)` is 3.
    """

    family = "tensor"
    inputs = (Input("x"), SOURCES)
    params = {
        "start": Param(int, 0),
        "end": Param("dim", TO_END, doc="exclusive end; a dim such as T or T // 2 reads its size at run time"),
        "axis": Param(int, -1),
        "step": Param(int, 1),
        "source_axes": SOURCE_AXES,
    }
    samples = (
        {"x": "float32[2, 8]", "start": 2, "end": 5},
        {"x": "float32[2, 6, 4]", "start": -4, "end": 100, "axis": 1, "step": 2},
        {"x": "float32[2, 7, 3]", "start": 1, "end": -1, "axis": -2},
        {"x": "float32[2, 5, 3]", "start": 3, "end": 1, "axis": 1},
        {"x": "float32[2, 9]", "sources": ["float32[2, 4]"], "start": 1, "end": Sym.name("B") * 2 + 1, "axis": 1,
         "source_axes": (("B", 0),)},
    )

    def _length(self, x: TensorType) -> tuple[int, Dim]:
        axis = normalize_axis(self, self.axis, x.rank)
        self.require(self.step >= 1, f"slice step must be >= 1, got {self.step}")
        size = x.shape[axis]
        if isinstance(self.end, Sym):
            self.require(self.start >= 0, f"slice up to {self.end} needs a start >= 0, got {self.start}")
            return axis, _sym_length(self.end, -self.start, self.step)
        if is_static(size):
            return axis, len(range(int(size))[self.start:self.end:self.step])
        # a symbolic axis: an index is an offset from 0 or from the end
        start = (size if self.start < 0 else 0, self.start)
        end = (size, 0) if self.end >= TO_END else (size if self.end < 0 else 0, self.end)
        self.require(
            start[0] == end[0] or start[0] == 0,
            f"cannot tell the length of slice({self.start}, {self.end}) of an axis of symbolic size {size}",
            "use indices that both count from the start or both from the end",
        )
        if start[0] == end[0]:
            return axis, max(0, -(-(end[1] - start[1]) // self.step))
        return axis, _sym_length(size, end[1] - start[1], self.step)

    def infer(self, x: TensorType, *sources: TensorType) -> TensorType:
        check_sources(self, (self.end,), len(sources))
        axis, length = self._length(x)
        return x.with_shape(x.shape[:axis] + (length,) + x.shape[axis + 1:])

    def to_torch(self, c: Lowering) -> str:
        x = c.inputs[0]
        axis, _ = self._length(c.types[0])
        end = torch_size(self, self.end, c) if isinstance(self.end, Sym) else "" if self.end >= TO_END else repr(self.end)
        start = repr(self.start) if self.start else ""
        step = f":{self.step!r}" if self.step != 1 else ""
        return f"{x}[{':, ' * axis}{start}:{end}{step}]"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x = c.inputs[0]
        axis, _ = self._length(c.types[0])
        if isinstance(self.end, Sym):
            end = onnx_size(self, tape, self.end, c)
        else:
            end = tape.const([min(self.end, TO_END)], "int64")
        ins = [x, tape.const([self.start], "int64"), end, tape.const([axis], "int64"), tape.const([self.step], "int64")]
        return tape.op("Slice", ins)


def _sym_length(size: Dim, offset: int, step: int) -> Dim:
    """ceil((size + offset) / step), written as a person would: T - 2, (T - 1) // 2."""
    n = offset + step - 1
    total = size - (-n) if n < 0 else size + n
    return total if step == 1 else total // step


class Reduction(Op):
    """A reduction over one axis; `keepdim` keeps it as size 1."""

    abstract = True
    family = "reduce"
    params = {"axis": Param(int, -1), "keepdim": Param(bool, False)}
    samples = ({"x": "float32[2, 5, 4]", "axis": 1}, {"x": "float32[3, 4]", "keepdim": True})
    torch_method: ClassVar[str] = ""
    onnx_op: ClassVar[str] = ""
    axes_input_since: ClassVar[int] = 18  # before it, `axes` is an attribute

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float or x.dtype in ("int32", "int64"), f"`{self.name}` needs a float or int32/int64 tensor, got {x}")
        axis = normalize_axis(self, self.axis, x.rank)
        return x.with_shape(x.shape[:axis] + ((1,) if self.keepdim else ()) + x.shape[axis + 1:])

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]}.{self.torch_method}({self.axis}, keepdim={self.keepdim})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        keep = {"keepdims": int(self.keepdim)}
        if tape.opset < self.axes_input_since:
            return tape.op(self.onnx_op, [c.inputs[0]], {"axes": [self.axis], **keep})
        return tape.op(self.onnx_op, [c.inputs[0], tape.const([self.axis], "int64")], keep)


class Sum(Reduction):
    """The sum over `axis`."""

    torch_method = "sum"
    onnx_op = "ReduceSum"
    axes_input_since = 13
    samples = (*Reduction.samples, {"x": "int32[2, 3]", "axis": 1, "high": 100})

    def to_torch(self, c: Lowering) -> str:
        if c.types[0].dtype != "int32":
            return super().to_torch(c)
        return f"{c.inputs[0]}.sum({self.axis}, keepdim={self.keepdim}, dtype=torch.int32)"  # torch widens to int64


class Max(Reduction):
    """The largest value over `axis` (values only, as torch.amax)."""

    torch_method = "amax"
    onnx_op = "ReduceMax"


class Min(Reduction):
    """The smallest value over `axis` (values only, as torch.amin)."""

    torch_method = "amin"
    onnx_op = "ReduceMin"
