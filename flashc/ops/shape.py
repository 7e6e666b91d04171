"""Ops that move data around without arithmetic: flatten, reshape, transpose, concat."""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import Dim, is_static, product
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param


def _factors(shape: tuple[Dim, ...]) -> tuple[int, list[str]]:
    """A shape's element count as (static coefficient, sorted symbolic factors)."""
    coeff, syms = 1, []
    for d in shape:
        if is_static(d):
            coeff *= int(d)
        else:
            syms.append(str(d))
    return coeff, sorted(syms)


def normalize_axis(op: Op, axis: int, rank: int) -> int:
    op.require(-rank <= axis < rank, f"`{op.name}` axis {axis} is out of range for rank {rank}")
    return axis % rank


class Flatten(Op):
    """Merge all axes from `start` on into one (image -> vector before `linear`)."""

    family = "shape"
    params = {"start": Param(int, 1)}
    samples = ({"x": "float32[2, 3, 4, 5]"}, {"x": "float32[2, 3, 4]", "start": 2})

    def infer(self, x: TensorType) -> TensorType:
        start = normalize_axis(self, self.start, x.rank)
        return x.with_shape(x.shape[:start] + (product(x.shape[start:]),))

    def to_torch(self, c: Lowering) -> str:
        return f"torch.flatten({c.inputs[0]}, {self.start})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        start = self.start % c.types[0].rank
        return tape.op("Reshape", [c.inputs[0], tape.const([0] * start + [-1], "int64")])


class Reshape(Op):
    """A new shape with the same elements; one axis may be left to inference."""

    family = "shape"
    params = {"shape": Param("shape", doc="the new dims, e.g. reshape(B, T, heads, d // heads)")}
    samples = ({"x": "float32[2, 12]", "shape": (2, 3, 4)}, {"x": "float32[2, 3, 4]", "shape": (6, 4)})

    def _targets(self, x: TensorType) -> list[int | str]:
        """Each target dim as a literal, 'same' (copy input axis) or 'infer' (-1)."""
        self.require(
            all(not is_static(d) or d >= 1 for d in self.shape),
            f"reshape dims must be positive, got {list(self.shape)}",
            "write each size, or a symbolic name such as B or T (one of them is inferred)",
        )
        out: list[int | str] = []
        for axis, d in enumerate(self.shape):
            if is_static(d):
                out.append(int(d))
            elif axis < x.rank and x.shape[axis] == d:
                out.append("same")
            else:
                out.append("infer")
        self.require(
            out.count("infer") <= 1,
            f"reshape can infer only one dimension, but {', '.join(str(d) for d, t in zip(self.shape, out) if t == 'infer')}"
            " are not known from the input",
            "keep symbolic dims at the axis they had in the input",
        )
        return out

    def infer(self, x: TensorType) -> TensorType:
        self._targets(x)
        before, after = _factors(x.shape), _factors(tuple(self.shape))
        if before[1] == after[1]:  # same symbolic factors: the static parts must match
            self.require(
                before[0] == after[0],
                f"cannot reshape {x.shape_str()} ({product(x.shape)} elements) into "
                f"[{', '.join(str(d) for d in self.shape)}] ({product(tuple(self.shape))} elements)",
            )
        return x.with_shape(tuple(self.shape))

    def to_torch(self, c: Lowering) -> str:
        x = c.inputs[0]
        dims = [f"{x}.shape[{i}]" if t == "same" else "-1" if t == "infer" else str(t)
                for i, t in enumerate(self._targets(c.types[0]))]
        return f"{x}.reshape({', '.join(dims)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        dims = [0 if t == "same" else -1 if t == "infer" else t for t in self._targets(c.types[0])]
        return tape.op("Reshape", [c.inputs[0], tape.const(dims, "int64")])


class Transpose(Op):
    """Swap two axes (as torch.transpose)."""

    family = "shape"
    params = {"dim0": Param(int), "dim1": Param(int)}
    samples = ({"x": "float32[2, 3, 4]", "dim0": 1, "dim1": 2},)

    def perm(self, rank: int) -> list[int]:
        a, b = normalize_axis(self, self.dim0, rank), normalize_axis(self, self.dim1, rank)
        perm = list(range(rank))
        perm[a], perm[b] = perm[b], perm[a]
        return perm

    def infer(self, x: TensorType) -> TensorType:
        return x.with_shape(tuple(x.shape[i] for i in self.perm(x.rank)))

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]}.transpose({self.dim0}, {self.dim1})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Transpose", [c.inputs[0]], {"perm": self.perm(c.types[0].rank)})


class Permute(Op):
    """Reorder all axes."""

    family = "shape"
    params = {"dims": Param("shape", doc="the new order of the axes")}
    samples = ({"x": "float32[2, 3, 4]", "dims": (2, 0, 1)},)

    def infer(self, x: TensorType) -> TensorType:
        dims = [int(d) if is_static(d) else -999 for d in self.dims]
        self.require(
            sorted(d % x.rank if -x.rank <= d < x.rank else -1 for d in dims) == list(range(x.rank)),
            f"permute needs each of the {x.rank} axes exactly once, got {list(self.dims)}",
        )
        return x.with_shape(tuple(x.shape[d] for d in dims))

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]}.permute({', '.join(str(d) for d in self.dims)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        rank = c.types[0].rank
        return tape.op("Transpose", [c.inputs[0]], {"perm": [int(d) % rank for d in self.dims]})


class Concat(Op):
    """Join tensors along `axis`; all other axes must agree."""

    family = "shape"
    inputs = (Input("xs", variadic=True),)
    params = {"axis": Param(int, -1)}
    samples = ({"xs": ["float32[2, 3]", "float32[2, 5]"]}, {"xs": ["float32[2, 3, 4]"] * 3, "axis": 1})

    def infer(self, *xs: TensorType) -> TensorType:
        self.require(len(xs) >= 1, "concat needs at least one tensor")
        first = xs[0]
        axis = normalize_axis(self, self.axis, first.rank)
        total: Dim = 0
        for x in xs:
            same = x.rank == first.rank and all(
                a == b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != axis
            )
            self.require(
                same and x.dtype == first.dtype,
                f"concat along axis {self.axis} needs matching tensors, got {first} and {x}",
            )
            total = total + x.shape[axis]
        return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])

    def to_torch(self, c: Lowering) -> str:
        return f"torch.cat([{', '.join(c.inputs)}], dim={self.axis})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Concat", list(c.inputs), {"axis": self.axis})


class ExpandLike(Op):
    """Repeat a size-1 axis of `x` to the size that axis has in `like` (a class token per batch row)."""

    family = "shape"
    inputs = (Input("x"), Input("like"))
    params = {"axis": Param(int, 0, doc="the axis to expand; x must have size 1 there")}
    samples = ({"x": "float32[2, 1, 4]", "like": "float32[2, 5, 4]", "axis": 1},)

    def infer(self, x: TensorType, like: TensorType) -> TensorType:
        axis = normalize_axis(self, self.axis, x.rank)
        self.require(axis < like.rank, f"expand_like axis {self.axis} is out of range for {like}")
        self.require(x.shape[axis] == 1, f"expand_like needs size 1 on axis {self.axis}, got {x.shape_str()}")
        return x.with_shape(x.shape[:axis] + (like.shape[axis],) + x.shape[axis + 1:])

    def to_torch(self, c: Lowering) -> str:
        axis = self.axis % c.types[0].rank
        sizes = ["-1"] * c.types[0].rank
        sizes[axis] = f"{c.inputs[1]}.shape[{axis}]"
        return f"{c.inputs[0]}.expand({', '.join(sizes)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        rank = c.types[0].rank
        axis = self.axis % rank
        size = tape.op("Shape", [c.inputs[1]], {"start": axis, "end": axis + 1})
        parts = ([tape.const([1] * axis, "int64")] if axis else []) + [size] + (
            [tape.const([1] * (rank - axis - 1), "int64")] if axis < rank - 1 else [])
        shape = tape.op("Concat", parts, {"axis": 0}) if len(parts) > 1 else size
        return tape.op("Expand", [c.inputs[0], shape])
