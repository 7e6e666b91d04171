"""Indexing: pick elements by integer index (gather, take_along_axis, one_hot) or find them (topk, argmax).

Indices are int64 everywhere, as in torch (`Tensor.long()`) and ONNX; a
negative index counts from the end of its axis in `gather` and
`take_along_axis`, as both backends do. `topk`, `argmax` and `argmin`
produce int64 indices that feed straight back into `gather` or
`take_along_axis` (the routing of a mixture of experts).

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.shape import normalize_axis

NUMERIC = ("float32", "float16", "bfloat16", "float64", "int32", "int64")
INDEX = ("int64",)
INDEX_HINT = "indices are int64; cast them first with `cast`"


def _numeric(op: Op, x: TensorType) -> None:
    op.require(x.dtype in NUMERIC, f"`{op.name}` needs a float or int32/int64 tensor, got {x}")


class Gather(Op):
    """Slices of `x` along `axis` picked by integer ids: `table |> gather(ids)` (numpy's take).

    The index may have any shape: the output is x's shape with `axis`
    replaced by the index's shape (`x[:, ids]`), so a 1-d index is torch's
    `index_select`. (torch.gather, which picks one element per position, is
    `take_along_axis` here.)
    """

    examples = (
        ('parameter(10, 64) |> gather(ids)', 'a lookup table: rows picked by ids, [B, T, 64]'),
        ('x |> index_select(arange(T, step = 2), axis = 1)', 'every other position, as torch.index_select'),
    )

    family = "indexing"
    aliases = ("index_select",)
    inputs = (Input("x"), Input("index", dtypes=INDEX))
    params = {"axis": Param(int, 0)}
    samples = (
        {"x": "float32[2, 7, 3]", "index": "int64[4]", "axis": 1, "high": 7},
        {"x": "float32[2, 6, 4]", "index": "int64[3, 2]", "axis": 1, "high": 6},
        {"x": "float32[2, 6]", "index": "int64[3]", "axis": -1, "high": 6},
        {"x": "int64[2, 5]", "index": "int64[2, 3]", "axis": -1, "high": 5},
    )

    def infer(self, x: TensorType, index: TensorType) -> TensorType:
        axis = normalize_axis(self, self.axis, x.rank)
        return x.with_shape(x.shape[:axis] + index.shape + x.shape[axis + 1:])

    def to_torch(self, c: Lowering) -> str:
        axis = self.axis % c.types[0].rank
        return f"{c.inputs[0]}[{':, ' * axis}{c.inputs[1]}]"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Gather", [c.inputs[0], c.inputs[1]], {"axis": self.axis % c.types[0].rank})


class TakeAlongAxis(Op):
    """One element of `x` along `axis` per index, as torch.gather: `scores |> take_along_axis(ids, axis = -1)`.

    The index has x's rank; the output has the index's shape. On the other
    axes the index may be shorter than x, never longer.
    """

    examples = (
        ('x |> take_along_axis(x |> argmax(keepdim), axis = -1)', "each row's maximum, [B, T, 1]"),
    )

    family = "indexing"
    inputs = (Input("x"), Input("index", dtypes=INDEX))
    params = {"axis": Param(int, -1)}
    samples = (
        {"x": "float32[2, 5, 6]", "index": "int64[2, 5, 2]", "axis": -1, "high": 6},
        {"x": "float32[2, 5, 3]", "index": "int64[2, 4, 3]", "axis": 1, "high": 5},
        {"x": "float32[4, 6]", "index": "int64[4, 9]", "axis": 1, "high": 6},
    )

    def infer(self, x: TensorType, index: TensorType) -> TensorType:
        self.require(index.rank == x.rank, f"`take_along_axis` needs an index of the same rank as {x}, got {index}",
                     "for ids that select whole rows use `gather`")
        axis = normalize_axis(self, self.axis, x.rank)
        for i, (a, b) in enumerate(zip(x.shape, index.shape)):
            fits = i == axis or a == b or (is_static(a) and is_static(b) and b <= a)
            self.require(fits, f"`take_along_axis` index {index} does not fit {x} on axis {i}",
                         f"away from axis {self.axis} the index may be shorter than x, never longer")
        return x.with_shape(index.shape)

    def to_torch(self, c: Lowering) -> str:
        return f"torch.gather({c.inputs[0]}, {self.axis}, {c.inputs[1]})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, index = c.inputs
        if c.types[0].shape != c.types[1].shape:  # GatherElements wants equal sizes off the axis
            axis = self.axis % c.types[0].rank
            starts = [0] * (c.types[0].rank - 1)
            ends = tape.op("Shape", [index])
            keep = [i for i in range(c.types[0].rank) if i != axis]
            ends = tape.op("Gather", [ends, tape.const(keep, "int64")], {"axis": 0})
            x = tape.op("Slice", [x, tape.const(starts, "int64"), ends, tape.const(keep, "int64")])
        return tape.op("GatherElements", [x, index], {"axis": self.axis % c.types[0].rank})


class Topk(Op):
    """The `k` largest (or smallest) values along `axis` and their int64 indices: `v, i = x |> topk(2)`.

    Both outputs are sorted, largest first (smallest first with `largest =
    false`), as torch.topk returns them.
    """

    examples = (
        ('x |> softmax |> topk(2)', 'router weights and expert ids of a top-2 mixture of experts'),
    )

    family = "indexing"
    params = {
        "k": Param(int, doc="how many values to keep", minimum=1),
        "axis": Param(int, -1),
        "largest": Param(bool, True, doc="false: the k smallest"),
    }
    samples = (
        {"x": "float32[2, 5, 8]", "k": 3},
        {"x": "float32[2, 6, 4]", "k": 2, "axis": 1, "largest": False},
        {"x": "float32[3, 4]", "k": 4},
    )

    def infer(self, x: TensorType) -> tuple[TensorType, TensorType]:
        _numeric(self, x)
        axis = normalize_axis(self, self.axis, x.rank)
        size = x.shape[axis]
        self.require(not is_static(size) or self.k <= size, f"`topk` k = {self.k} is more than the {size} values along axis {self.axis} of {x}")
        shape = x.shape[:axis] + (self.k,) + x.shape[axis + 1:]
        return x.with_shape(shape), TensorType("int64", shape)

    def to_torch(self, c: Lowering) -> str:
        return f"torch.topk({c.inputs[0]}, {self.k}, dim={self.axis}, largest={self.largest})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        attrs = {"axis": self.axis % c.types[0].rank, "largest": int(self.largest), "sorted": 1}
        return tape.op("TopK", [c.inputs[0], tape.const([self.k], "int64")], attrs, outputs=2)


class ArgExtreme(Op):
    """The int64 index of the extreme value along `axis` (the first one on ties)."""

    abstract = True
    family = "indexing"
    params = {"axis": Param(int, -1), "keepdim": Param(bool, False)}
    samples = ({"x": "float32[2, 5, 4]", "axis": 1}, {"x": "float32[3, 6]", "keepdim": True}, {"x": "int64[3, 6]", "high": 100})
    torch_fn = ""
    onnx_op = ""

    def infer(self, x: TensorType) -> TensorType:
        _numeric(self, x)
        axis = normalize_axis(self, self.axis, x.rank)
        return TensorType("int64", x.shape[:axis] + ((1,) if self.keepdim else ()) + x.shape[axis + 1:])

    def to_torch(self, c: Lowering) -> str:
        return f"torch.{self.torch_fn}({c.inputs[0]}, dim={self.axis}, keepdim={self.keepdim})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        attrs = {"axis": self.axis % c.types[0].rank, "keepdims": int(self.keepdim), "select_last_index": 0}
        return tape.op(self.onnx_op, [c.inputs[0]], attrs)


class Argmax(ArgExtreme):
    """The int64 index of the largest value along `axis` (the first on ties): `pred = logits |> argmax`."""

    examples = (
        ('x |> argmax', 'predicted class ids, int64[B, T]'),
        ('x |> argmax(axis = 1, keepdim)', 'int64[B, 1, 64]'),
    )

    torch_fn = "argmax"
    onnx_op = "ArgMax"


class Argmin(ArgExtreme):
    """The int64 index of the smallest value along `axis` (the first on ties): `nearest = dist |> argmin`."""

    examples = (
        ('x |> argmin', 'index of the smallest value, int64[B, T]'),
    )

    torch_fn = "argmin"
    onnx_op = "ArgMin"


class OneHot(Op):
    """int64 ids in [0, num_classes) to one-hot vectors on a new last axis: `y |> one_hot(10)`.

    The result is int64 as F.one_hot gives it, or float32 with `dtype =
    float32` (soft targets, masks to multiply with).
    """

    examples = (
        ('ids |> one_hot(10)', 'int64[B, T, 10]'),
        ('ids |> one_hot(10, dtype = float32)', 'float targets'),
    )

    family = "indexing"
    inputs = (Input("x", dtypes=INDEX),)
    params = {
        "num_classes": Param(int, doc="length of the new last axis", minimum=1),
        "dtype": Param("dtype", "int64", doc="int64 or float32, written bare"),
    }
    samples = (
        {"x": "int64[2, 5]", "num_classes": 7, "high": 7},
        {"x": "int64[6]", "num_classes": 4, "dtype": "float32", "high": 4},
    )

    def infer(self, x: TensorType) -> TensorType:
        self.require(self.dtype in ("int64", "float32"), f"`one_hot` makes int64 or float32 tensors, got {self.dtype}")
        return TensorType(self.dtype, x.shape + (self.num_classes,))

    def to_torch(self, c: Lowering) -> str:
        out = f"F.one_hot({c.inputs[0]}, {self.num_classes})"
        return out if self.dtype == "int64" else f"{out}.to(torch.{self.dtype})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        values = tape.const([0, 1], self.dtype)
        return tape.op("OneHot", [c.inputs[0], tape.const(self.num_classes, "int64"), values], {"axis": -1})
