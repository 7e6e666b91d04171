"""Rearranging elements without arithmetic: pad, roll, flip, tril / triu, repeat_interleave.

`pad` takes its sizes in torch's F.pad order: pairs (before, after) starting
from the LAST axis, so `pad((1, 1, 2, 0))` pads the last axis by 1 on each
side and the one before it by 2 at the start. ONNX orders pads the other way
(all begins, then all ends, from the first axis); the lowering converts.

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import Dim, is_static
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param
from flashc.ops.shape import normalize_axis

INT64_MAX = 2**63 - 1
# Onnxruntime runs the Trilu op on these dtypes only.
TRILU_DTYPES = ("float32", "float64", "int64", "bool")
PAD_MODES = ("constant", "reflect", "replicate", "circular")
ONNX_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
WRAP_SINCE = 19  # ONNX Pad's "wrap" mode; earlier opsets get slices and a concat


def _axes(op: Op, value: int | tuple[int, ...], rank: int) -> list[int]:
    axes = [normalize_axis(op, a, rank) for a in ((value,) if isinstance(value, int) else value)]
    op.require(len(set(axes)) == len(axes), f"`{op.name}` names an axis twice: {value}")
    return axes


class Pad(Op):
    """Pad with a constant, a reflection, the edge value or a wrap-around, in F.pad's order: `x |> pad((1, 1))`.

    `pad` lists (before, after) pairs from the last axis backwards, as F.pad
    does: `pad((1, 2))` pads the last axis, `pad((1, 1, 1, 1))` the last two.
    A single number pads the last axis by that much on both sides. Modes:
    `constant` (fills `value`), `reflect` (mirror without the edge; each pad
    smaller than its axis), `replicate` (repeats the edge), `circular`
    (wraps around). As in torch, the last three pad the last 1 to 3 axes of a
    tensor with one or two more axes than that (a batch, channels).
    """

    examples = (
        ('x |> pad((1, 1))', 'last axis: one zero each side, [B, T, 66]'),
        ('img |> pad((1, 1, 2, 2), mode = "reflect")', 'W by 1, H by 2, mirrored'),
        ('mel |> pad((2, 0), mode = "replicate")', "repeat the first frame twice (a causal conv's left context)"),
        ('img |> pad((1, 1, 1, 1), mode = "circular")', "wrap around (opset 19's wrap; slices before)"),
        ('x |> pad((0, 0, 0, 3), value = -1)', '3 rows of -1 after the last position'),
    )

    family = "shape"
    params = {
        "pad": Param("ints", doc="(before, after) pairs from the last axis backwards, as F.pad"),
        "mode": Param(str, "constant", choices=PAD_MODES),
        "value": Param(float, 0.0, doc="fill value of constant mode"),
    }
    samples = (
        {"x": "float32[2, 3, 5]", "pad": (1, 2)},
        {"x": "float32[2, 3, 4, 5]", "pad": (1, 1, 2, 0), "value": -1.5},
        {"x": "float32[2, 3, 6]", "pad": (2, 3), "mode": "reflect"},
        {"x": "float32[2, 3, 4, 5]", "pad": (1, 2, 3, 1), "mode": "reflect"},
        {"x": "float32[2, 3, 5]", "pad": (2, 1), "mode": "replicate"},
        {"x": "float32[2, 3, 4, 5]", "pad": (0, 2, 1, 1), "mode": "replicate"},
        {"x": "float32[2, 3, 5]", "pad": (2, 3), "mode": "circular"},
        {"x": "float32[2, 3, 4, 5]", "pad": (1, 2, 2, 1), "mode": "circular"},
        {"x": "int64[2, 6]", "pad": 2, "value": 7.0},
    )

    def pairs(self, x: TensorType) -> list[tuple[int, int]]:
        """(before, after) for every axis of x, first axis first."""
        flat = (self.pad, self.pad) if isinstance(self.pad, int) else tuple(self.pad)
        self.require(len(flat) % 2 == 0 and 2 <= len(flat) <= 2 * x.rank,
                     f"`pad` needs (before, after) pairs for at most the {x.rank} axes of {x}, got {self.pad}",
                     "F.pad order: (last_before, last_after, second_last_before, second_last_after, ...)")
        self.require(all(p >= 0 for p in flat), f"`pad` sizes must be >= 0, got {self.pad}", "use `slice` to crop")
        n = len(flat) // 2
        if self.mode != "constant":
            self.require(n <= 3 and x.rank in (n + 1, n + 2),
                         f"`pad` mode {self.mode!r} pads the last 1 to 3 axes of a tensor with one or two more axes "
                         f"(as F.pad), got {n} padded axes of {x}")
        pairs = [(0, 0)] * (x.rank - n) + [(flat[2 * i], flat[2 * i + 1]) for i in reversed(range(n))]
        for size, (before, after) in zip(x.shape, pairs):
            if not is_static(size) or before == after == 0:
                continue
            if self.mode == "reflect":
                self.require(max(before, after) < size, f"reflect padding {max(before, after)} must be less than the axis size {size} of {x}")
            if self.mode == "circular":
                self.require(max(before, after) <= size, f"circular padding {max(before, after)} must be at most the axis size {size} of {x}")
        return pairs

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.dtype != "bool" and x.rank >= 1, f"`pad` needs a numeric tensor, got {x}")
        self.require(self.mode == "constant" or x.is_float, f"`pad` mode {self.mode!r} needs a float tensor, got {x}")
        self.require(x.is_float or float(self.value).is_integer(), f"`pad` of the integer tensor {x} needs a whole-number value, got {self.value}")
        shape: list[Dim] = [d + before + after for d, (before, after) in zip(x.shape, self.pairs(x))]
        return x.with_shape(tuple(shape))

    def to_torch(self, c: Lowering) -> str:
        flat = (self.pad, self.pad) if isinstance(self.pad, int) else tuple(self.pad)
        value = "" if self.mode != "constant" or self.value == 0 else f", value={self.value if c.types[0].is_float else int(self.value)!r}"
        mode = "" if self.mode == "constant" else f", mode={self.mode!r}"
        return f"F.pad({c.inputs[0]}, {flat!r}{mode}{value})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, t = c.inputs[0], c.types[0]
        pairs = self.pairs(t)
        if self.mode == "circular" and tape.opset < WRAP_SINCE:
            return _wrap(tape, x, pairs)
        pads = tape.const([b for b, _ in pairs] + [a for _, a in pairs], "int64")
        if self.mode != "constant":
            return tape.op("Pad", [x, pads], {"mode": ONNX_PAD_MODES[self.mode]})
        value = tape.const(self.value if t.is_float else int(self.value), t.dtype)
        return tape.op("Pad", [x, pads, value], {"mode": "constant"})


def _slice(tape: Any, x: str, axis: int, start: int, end: int) -> str:
    ints = [tape.const([v], "int64") for v in (start, end, axis)]
    return tape.op("Slice", [x, *ints])


def _wrap(tape: Any, x: str, pairs: list[tuple[int, int]]) -> str:
    """Circular padding as slices and concats, axis by axis (torch's order: the last axis first)."""
    for axis in reversed(range(len(pairs))):
        before, after = pairs[axis]
        if not before and not after:
            continue
        parts = ([_slice(tape, x, axis, -before, INT64_MAX)] if before else []) + [x] + (
            [_slice(tape, x, axis, 0, after)] if after else [])
        x = tape.op("Concat", parts, {"axis": axis})
    return x


class Roll(Op):
    """Shift elements along axes, wrapping around as torch.roll: `x |> roll(1, axis = -1)`.

    `shifts` and `axis` are numbers or tuples of the same length; a positive
    shift moves elements towards higher indices.
    """

    examples = (
        ('x |> roll(1, axis = 1)', 'shift positions right by one, wrapping'),
        ('img |> roll((4, -4), axis = (2, 3))', "Swin's shifted windows"),
    )

    family = "shape"
    params = {"shifts": Param("ints", doc="shift per axis"), "axis": Param("ints", -1, doc="axis or axes to roll")}
    samples = (
        {"x": "float32[2, 5, 3]", "shifts": 2, "axis": 1},
        {"x": "float32[2, 4, 6]", "shifts": (-1, 7), "axis": (1, 2)},
        {"x": "float32[3, 4]", "shifts": 1, "axis": 0},
    )

    def plan(self, x: TensorType) -> list[tuple[int, int]]:
        shifts = (self.shifts,) if isinstance(self.shifts, int) else tuple(self.shifts)
        axes = _axes(self, self.axis, x.rank)
        self.require(len(shifts) == len(axes), f"`roll` needs one shift per axis, got shifts {self.shifts} for axis {self.axis}")
        return list(zip(axes, shifts))

    def infer(self, x: TensorType) -> TensorType:
        self.plan(x)
        return x

    def to_torch(self, c: Lowering) -> str:
        return f"torch.roll({c.inputs[0]}, {self.shifts!r}, {self.axis!r})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x = c.inputs[0]
        for axis, shift in self.plan(c.types[0]):
            size = c.types[0].shape[axis]
            if is_static(size):
                cut = tape.const([(-shift) % int(size)], "int64")
            else:  # (-shift) mod size at run time; int Mod takes the divisor's sign, as Python's %
                n = tape.op("Shape", [x], {"start": axis, "end": axis + 1})
                cut = tape.op("Mod", [tape.const([-shift], "int64"), n])
            where = tape.const([axis], "int64")
            tail = tape.op("Slice", [x, cut, tape.const([INT64_MAX], "int64"), where])
            head = tape.op("Slice", [x, tape.const([0], "int64"), cut, where])
            x = tape.op("Concat", [tail, head], {"axis": axis})
        return x


class Flip(Op):
    """Reverse the order of elements along the given axes: `x |> flip(-1)`."""

    examples = (
        ('x |> flip(1)', "reverse the sequence (a backward RNN's input)"),
    )

    family = "shape"
    params = {"axis": Param("ints", -1, doc="axis or axes to reverse")}
    samples = ({"x": "float32[2, 5, 3]", "axis": 1}, {"x": "float32[2, 4, 6]", "axis": (0, 2)}, {"x": "int64[3, 4]"})

    def infer(self, x: TensorType) -> TensorType:
        _axes(self, self.axis, x.rank)
        return x

    def to_torch(self, c: Lowering) -> str:
        axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        return f"torch.flip({c.inputs[0]}, {axes!r})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        axes = _axes(self, self.axis, c.types[0].rank)
        n = len(axes)
        ins = [c.inputs[0], tape.const([-1] * n, "int64"), tape.const([-INT64_MAX] * n, "int64"),
               tape.const(axes, "int64"), tape.const([-1] * n, "int64")]
        return tape.op("Slice", ins)


class Triangle(Op):
    """Keep one triangle of the last two axes, zeroing the rest."""

    abstract = True
    family = "shape"
    params = {"diagonal": Param(int, 0, doc="0: the main diagonal; > 0 above it, < 0 below it")}
    samples = (
        {"x": "float32[2, 4, 5]"},
        {"x": "float32[2, 5, 5]", "diagonal": 1},
        {"x": "float32[2, 3, 6]", "diagonal": -1},
        {"x": "bool[2, 4, 4]"},
    )
    upper = False

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.rank >= 2, f"`{self.name}` needs a tensor of rank >= 2, got {x}")
        self.require(x.dtype in TRILU_DTYPES, f"`{self.name}` takes {', '.join(TRILU_DTYPES)} tensors, got {x}")
        return x

    def to_torch(self, c: Lowering) -> str:
        return f"torch.{self.name}({c.inputs[0]}, {self.diagonal})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Trilu", [c.inputs[0], tape.const(self.diagonal, "int64")], {"upper": int(self.upper)})


class Tril(Triangle):
    """The lower triangle (j <= i + diagonal) of the last two axes: `scores |> tril`, a causal mask from ones."""

    examples = (
        ('ones(T, T, dtype = bool) |> tril', 'a causal mask: true where a query may look'),
    )


class Triu(Triangle):
    """The upper triangle (j >= i + diagonal) of the last two axes: `mask |> triu(1)`."""

    examples = (
        ('ones(T, T, dtype = bool) |> triu(1)', 'true above the diagonal: the future'),
    )

    upper = True


class RepeatInterleave(Op):
    """Repeat each element `repeats` times in place along `axis`: `kv |> repeat_interleave(4, axis = 1)`.

    [a, b] becomes [a, a, b, b] (torch.repeat_interleave), as grouped-query
    attention repeats each key/value head for its group of query heads.
    """

    examples = (
        ('x |> reshape(B, T, 2, 32) |> repeat_interleave(4, axis = 2)', '2 key/value heads shared by 8 query heads'),
    )

    family = "shape"
    params = {"repeats": Param(int, doc="copies of each element", minimum=1), "axis": Param(int, 0)}
    samples = (
        {"x": "float32[2, 3, 4]", "repeats": 2, "axis": 1},
        {"x": "float32[2, 3]", "repeats": 3, "axis": 0},
        {"x": "int64[2, 5]", "repeats": 2, "axis": -1},
    )

    def infer(self, x: TensorType) -> TensorType:
        axis = normalize_axis(self, self.axis, x.rank)
        return x.with_shape(x.shape[:axis] + (x.shape[axis] * self.repeats,) + x.shape[axis + 1:])

    def to_torch(self, c: Lowering) -> str:
        return f"torch.repeat_interleave({c.inputs[0]}, {self.repeats}, dim={self.axis})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, rank = c.inputs[0], c.types[0].rank
        axis = self.axis % rank
        wide = tape.op("Unsqueeze", [x, tape.const([axis + 1], "int64")])
        tiled = tape.op("Tile", [wide, tape.const([1] * (axis + 1) + [self.repeats] + [1] * (rank - axis - 1), "int64")])
        shape = tape.op("Shape", [x])
        parts = []
        if axis:
            parts.append(tape.op("Slice", [shape, tape.const([0], "int64"), tape.const([axis], "int64")]))
        parts.append(tape.const([-1], "int64"))
        if axis < rank - 1:
            parts.append(tape.op("Slice", [shape, tape.const([axis + 1], "int64"), tape.const([rank], "int64")]))
        target = tape.op("Concat", parts, {"axis": 0}) if len(parts) > 1 else parts[0]
        return tape.op("Reshape", [tiled, target])
