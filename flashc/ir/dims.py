"""Symbolic dimensions: `B`, `T` stay names; arithmetic on them stays exact.

A dimension is either a plain ``int`` or a :class:`Sym`. ``Sym`` keeps a tiny
expression tree so that conv/pool output sizes of symbolic inputs
(``(H - 3) // 2 + 1``) are still comparable and printable; they become named
dynamic dimensions in ONNX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

Dim = Union[int, "Sym"]

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2}


@dataclass(frozen=True)
class Sym:
    """A symbolic dimension: a name, or an operator applied to two dims."""

    op: str  # "name" or one of + - * //
    args: tuple

    @staticmethod
    def name(text: str) -> Sym:
        return Sym("name", (text,))

    def __str__(self) -> str:
        return _format(self, 0)

    def __repr__(self) -> str:
        return str(self)

    def __add__(self, other: Dim) -> Dim:
        return combine("+", self, other)

    def __radd__(self, other: Dim) -> Dim:
        return combine("+", other, self)

    def __sub__(self, other: Dim) -> Dim:
        return combine("-", self, other)

    def __rsub__(self, other: Dim) -> Dim:
        return combine("-", other, self)

    def __mul__(self, other: Dim) -> Dim:
        return combine("*", self, other)

    def __rmul__(self, other: Dim) -> Dim:
        return combine("*", other, self)

    def __floordiv__(self, other: Dim) -> Dim:
        return combine("//", self, other)

    def __rfloordiv__(self, other: Dim) -> Dim:
        return combine("//", other, self)


def _format(d: Dim, parent: int) -> str:
    if isinstance(d, int):
        return str(d)
    if d.op == "name":
        return d.args[0]
    prec = _PRECEDENCE[d.op]
    left, right = d.args
    if d.op == "+" and isinstance(right, int) and right < 0:
        text = f"{_format(left, prec)} - {-right}"
    else:
        text = f"{_format(left, prec)} {d.op} {_format(right, prec + 1)}"
    return f"({text})" if prec < parent else text


def combine(op: str, a: Dim, b: Dim) -> Dim:
    """Apply ``op`` to two dims, folding constants and identities.

    Constants are gathered at the right of a sum (`H - 3 + 1` is `H - 2`, `H - 1 + 1`
    is `H`), so conv output sizes of symbolic images stay comparable.
    """
    if isinstance(a, int) and isinstance(b, int):
        return {"+": a + b, "-": a - b, "*": a * b, "//": a // b if b else 0}[op]
    if op == "-" and isinstance(b, int):
        op, b = "+", -b
    if op == "+" and isinstance(a, int) and not isinstance(b, int):
        a, b = b, a
    if op == "+" and isinstance(b, int) and isinstance(a, Sym) and a.op == "+" and isinstance(a.args[1], int):
        return combine("+", a.args[0], a.args[1] + b)
    if op == "+" and b == 0 or op == "-" and b == 0 or op in ("*", "//") and b == 1:
        return a
    if op == "+" and a == 0 or op == "*" and a == 1:
        return b
    return Sym(op, (a, b))


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def product(dims: tuple[Dim, ...]) -> Dim:
    static = math.prod(d for d in dims if isinstance(d, int))
    result: Dim = static
    for d in dims:
        if not isinstance(d, int):
            result = combine("*", result, d)
    return result


def fmt(d: Dim) -> str:
    return str(d)
