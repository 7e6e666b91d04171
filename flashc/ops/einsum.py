"""Einstein summation: `einsum("bhqd,bhkd->bhqk", q, k)`, with its output shape read off the equation.

The equation names each axis of each operand with a letter; letters missing
from the output are summed over. `...` stands for the leading axes an operand
has beyond its letters, broadcast across operands. Without `->` the output
is the `...` axes then the letters used once, in alphabetical order, as in
torch.einsum. Every size a letter takes must agree (symbolic dims by name).

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

import re
from typing import Any

from flashc.ir.dims import Dim
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.elementwise import broadcast

_TERM = re.compile(r"^(?:[A-Za-z]|\.\.\.)*$")


class Einsum(Op):
    """Sums of products named by an equation: `scores = einsum("bqd,bkd->bqk", q, k)`.

    The equation comes first, then the tensors; letters missing from the
    output are summed over, and `...` covers leading axes (broadcast).
    """

    examples = (
        ('einsum("btd,bsd->bts", x, x)', 'all pairwise dot products, [B, T, T]'),
        ('einsum("...d,d->...", x, x |> mean(axis = 1) |> mean(axis = 0))', '`...` covers the leading axes'),
        ('einsum("bij->bji", x)', 'a transpose'),
    )

    family = "linalg"
    inputs = (Input("xs", variadic=True),)
    params = {"equation": Param(str, doc='e.g. "bij,bjk->bik"; spaces are ignored')}
    samples = (
        {"xs": ["float32[2, 3, 4]", "float32[2, 4, 5]"], "equation": "bij,bjk->bik"},
        {"xs": ["float32[2, 2, 3, 4]", "float32[2, 2, 5, 4]"], "equation": "bhqd,bhkd->bhqk"},
        {"xs": ["float32[2, 3, 4]"], "equation": "bij->bji"},
        {"xs": ["float32[2, 3, 4]"], "equation": "bij->b"},
        {"xs": ["float32[2, 3]", "float32[2, 4]"], "equation": "bi,bj->bij"},
        {"xs": ["float32[2, 3, 4]", "float32[4, 5]"], "equation": "...d,de->...e"},
        {"xs": ["float32[2, 4, 4]"], "equation": "bii->bi"},
        {"xs": ["float32[2, 3]", "float32[3, 4]", "float32[4, 5]"], "equation": "ij,jk,kl"},
    )

    def _parse(self) -> tuple[list[str], str]:
        """The input terms and the output term (implicit outputs written out)."""
        text = self.equation.replace(" ", "")
        lhs, arrow, rhs = text.partition("->")
        terms = lhs.split(",")
        for term in [*terms, *([rhs] if arrow else [])]:
            self.require(_TERM.match(term) is not None and term.count("...") <= 1,
                         f"einsum equation {self.equation!r} has a bad term {term!r}",
                         'each term is letters with at most one `...`, e.g. "bij,bjk->bik"')
        if not arrow:
            letters = "".join(terms).replace("...", "")
            once = sorted(k for k in set(letters) if letters.count(k) == 1)
            rhs = ("..." if any("..." in t for t in terms) else "") + "".join(once)
        return terms, rhs

    def infer(self, *xs: TensorType) -> TensorType:
        terms, rhs = self._parse()
        self.require(len(terms) == len(xs), f"einsum equation {self.equation!r} has {len(terms)} operand(s), got {len(xs)} tensor(s)")
        self.require(all(x.is_float for x in xs), f"einsum needs float tensors, got {', '.join(str(x) for x in xs)}")
        self.require(len({x.dtype for x in xs}) == 1, f"einsum operands have different dtypes: {', '.join(str(x) for x in xs)}",
                     "cast them to one dtype first")
        sizes: dict[str, Dim] = {}
        ellipsis: tuple[Dim, ...] = ()
        for term, x in zip(terms, xs):
            letters = term.replace("...", "")
            if "..." in term:
                self.require(x.rank >= len(letters), f"einsum term {term!r} needs rank >= {len(letters)}, got {x}")
                before, after = term.split("...")
                extra = x.rank - len(letters)
                dims = x.shape[:len(before)] + x.shape[len(before) + extra:]
                covered = TensorType(x.dtype, x.shape[len(before):len(before) + extra])
                ellipsis = broadcast(self, TensorType(x.dtype, ellipsis), covered)
            else:
                self.require(x.rank == len(letters), f"einsum term {term!r} names {len(letters)} axes, but {x} has {x.rank}",
                             "use `...` for leading axes you do not name")
                dims = x.shape
            for letter, d in zip(letters, dims):
                seen = sizes.setdefault(letter, d)
                self.require(seen == d, f"einsum letter {letter!r} is {seen} in one place and {d} in another ({self.equation!r})")
        letters = rhs.replace("...", "")
        self.require(len(set(letters)) == len(letters), f"einsum output {rhs!r} names a letter twice")
        unknown = [k for k in letters if k not in sizes]
        self.require(not unknown, f"einsum output letter {unknown[0] if unknown else ''!r} is not in any input of {self.equation!r}")
        self.require("..." not in rhs or any("..." in t for t in terms), f"einsum output {rhs!r} has `...` but no input has")
        before, _, after = rhs.partition("...") if "..." in rhs else (rhs, "", "")
        shape = tuple(sizes[k] for k in before) + (ellipsis if "..." in rhs else ()) + tuple(sizes[k] for k in after)
        return xs[0].with_shape(shape)

    def _explicit(self) -> str:
        """The equation with its output written out: both backends then read it the same way."""
        terms, rhs = self._parse()
        return f"{','.join(terms)}->{rhs}"

    def to_torch(self, c: Lowering) -> str:
        return f"torch.einsum({self._explicit()!r}, {', '.join(c.inputs)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Einsum", list(c.inputs), {"equation": self._explicit()})
