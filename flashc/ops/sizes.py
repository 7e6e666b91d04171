"""Sizes known only at run time: a dimension expression such as `(L - 1) // 2 + 1` evaluated in each backend.

An op whose settings may hold symbolic dims (`zeros(B, d)`, `arange(T)`,
`positions((L - 1) // 2 + 1)`) declares the variadic input ``sources`` and the
setting ``source_axes``. The builder fills both: one source tensor per name
the dims use (the input that declared it) and, aligned with them,
``(name, axis)`` pairs. The lowerings below then read each name from its
source's shape: `x.shape[1]` in PyTorch, a `Shape` node in ONNX. When the
sizes of an op without tensor inputs are all numbers, the first model input
is wired in under the empty name, only so that PyTorch makes the constant on
that input's device. Sources are always an op's last inputs.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import Dim, is_static
from flashc.ops.base import Input, Lowering, Op, Param

SOURCES = Input("sources", optional=True, variadic=True)
SOURCE_AXES = Param("source_axes", (), doc="set by the compiler: (name, axis) of each source")
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2}
_ONNX_OPS = {"+": "Add", "-": "Sub", "*": "Mul", "//": "Div"}  # sizes are >= 0, so Div's truncation is floor


def names_in(d: Dim) -> list[str]:
    """The symbolic names a dim uses, in order of first appearance."""
    if is_static(d):
        return []
    if d.op == "name":
        return [d.args[0]]
    out: list[str] = []
    for arg in d.args:
        out += [n for n in names_in(arg) if n not in out]
    return out


def check_sources(op: Op, dims: tuple[Dim, ...], n_sources: int) -> None:
    """Every name in ``dims`` must have a source the builder wired in."""
    known = {name for name, _ in op.source_axes}
    missing = [n for d in dims for n in names_in(d) if n not in known]
    op.require(not missing and n_sources == len(op.source_axes),
               f"`{op.name}` needs numbers or dimensions of the model's inputs, got {', '.join(str(d) for d in dims)}",
               f"`{missing[0]}` is not a dimension of any input" if missing else None)


def sources_of(op: Op, c: Lowering) -> list[str]:
    """The source tensors' names: the last inputs, one per `source_axes` entry."""
    return list(c.inputs[len(c.inputs) - len(op.source_axes):]) if op.source_axes else []


def torch_size(op: Op, d: Dim, c: Lowering, parent: int = 0) -> str:
    """A Python expression for ``d`` written as a person would: `(x.shape[2] - 1) // 2 + 1`."""
    if is_static(d):
        return repr(int(d))
    if d.op == "name":
        for (name, axis), source in zip(op.source_axes, sources_of(op, c)):
            if name == d.args[0]:
                return f"{source}.shape[{axis}]"
        raise op.fail(f"`{op.name}` has no source for the dimension {d}")
    prec = _PRECEDENCE[d.op]
    left, right = d.args
    if d.op == "+" and is_static(right) and right < 0:
        text = f"{torch_size(op, left, c, prec)} - {-right}"
    else:
        text = f"{torch_size(op, left, c, prec)} {d.op} {torch_size(op, right, c, prec + 1)}"
    return f"({text})" if prec < parent else text


def torch_shape(op: Op, dims: tuple[Dim, ...], c: Lowering) -> str:
    """A tuple expression for a shape: `(x.shape[0], 8)`."""
    parts = [torch_size(op, d, c) for d in dims]
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"


def torch_device(op: Op, c: Lowering) -> str:
    """`, device=...` of the first source, so a constant lands where the model runs."""
    sources = sources_of(op, c)
    return f", device={sources[0]}.device" if sources else ""


def onnx_size(op: Op, tape: Any, d: Dim, c: Lowering) -> str:
    """A 1-element int64 tensor holding ``d`` at run time."""
    if is_static(d):
        return tape.const([int(d)], "int64")
    if d.op == "name":
        for (name, axis), source in zip(op.source_axes, sources_of(op, c)):
            if name == d.args[0]:
                return tape.op("Shape", [source], {"start": axis, "end": axis + 1})
        raise op.fail(f"`{op.name}` has no source for the dimension {d}")
    left, right = (onnx_size(op, tape, a, c) for a in d.args)
    return tape.op(_ONNX_OPS[d.op], [left, right])


def onnx_shape(op: Op, tape: Any, dims: tuple[Dim, ...], c: Lowering) -> str:
    """A 1-d int64 shape tensor for ``dims``; all-static shapes are one constant."""
    if all(is_static(d) for d in dims):
        return tape.const([int(d) for d in dims], "int64")
    parts = [onnx_size(op, tape, d, c) for d in dims]
    return tape.op("Concat", parts, {"axis": 0}) if len(parts) > 1 else parts[0]


def onnx_scalar(op: Op, tape: Any, d: Dim, c: Lowering) -> str:
    """A 0-d int64 tensor holding ``d`` (Range's bounds are scalars)."""
    if is_static(d):
        return tape.const(int(d), "int64")
    return tape.op("Squeeze", [onnx_size(op, tape, d, c), tape.const([0], "int64")])
