"""Loss expressions, checked and typed: built-in losses applied to any expression of the model's
outputs, inputs and targets, tensor functions (`arange(B)`, `ones_like(x)`, `transpose(x)`,
`mean(x)`, ...), numbers and + - * /.

Every sub-expression gets a TensorType (or None for a plain number), so `flashc check` reports a
loss whose target cannot match its prediction, a function given the wrong rank, or a loss that is
not one number, at the expression's own line and column. The run-time meaning of each function is
in flashc/train/losses.py (FUNCTIONS); this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flashc.diagnostics import did_you_mean
from flashc.ir.dims import Sym, is_static
from flashc.ir.train import LossTerm
from flashc.ir.types import TensorType
from flashc.syntax import ast

if TYPE_CHECKING:
    from flashc.build.builder import Builder
    from flashc.build.scope import Scope

Typed = tuple[LossTerm, TensorType | None]


@dataclass(frozen=True)
class Function:
    """A tensor function of loss expressions: its arity, its result type, and what it does."""

    name: str
    arity: int
    result: Callable[[TensorType], TensorType]
    doc: str


def _same(t: TensorType) -> TensorType:
    return t


def _float(t: TensorType) -> TensorType:
    return t if t.is_float else t.with_dtype("float32")


def _scalar(t: TensorType) -> TensorType:
    return TensorType("float32" if not t.is_float else t.dtype, ())


def _swap(t: TensorType) -> TensorType:
    return t.with_shape(t.shape[:-2] + (t.shape[-1], t.shape[-2]))


FUNCTIONS = {f.name: f for f in (
    Function("ones_like", 1, _float, "a float tensor of ones shaped like x (a `real` label)"),
    Function("zeros_like", 1, _float, "a float tensor of zeros shaped like x (a `fake` label)"),
    Function("full_like", 1, _float, "`full_like(x, value = 0.9)`: x's shape filled with value (smoothed labels)"),
    Function("transpose", 1, _swap, "x with its last two axes swapped (the text-to-image logits of CLIP)"),
    Function("detach", 1, _same, "x without a gradient"),
    Function("mean", 1, _scalar, "the mean of all of x's elements (a Wasserstein critic's loss)"),
    Function("sum", 1, _scalar, "the sum of all of x's elements"),
    *(Function(n, 1, _float, f"elementwise {n}") for n in ("log", "exp", "abs", "sqrt", "sigmoid", "softplus",
                                                          "relu", "tanh", "square")),
)}
ARANGE_DOC = "`arange(B)`: 0, 1, ..., B - 1 (int64); B a size of the inputs or a whole number (contrastive labels)"
BUILT = "a loss is built from losses, tensor functions (arange, ones_like, transpose, mean, ...), numbers and + - * /"


class LossChecker:
    """Types a loss expression over the tensors the loss may read (``types``: name -> TensorType)."""

    def __init__(self, types: dict[str, TensorType], sizes: set[str], losses: dict[str, Any],
                 options: Callable[..., dict[str, Any]], check_call: Callable[..., None], scope: Scope, b: Builder):
        self.types, self.sizes, self.losses = types, sizes, losses
        self.options, self.check_call, self.scope, self.b = options, check_call, scope, b

    def loss(self, e: Any) -> LossTerm:
        """The whole loss: it must come out as one float number."""
        term, t = self.typed(e)
        if t is None:
            raise self.b.fail(e.span, "the loss is a constant; it needs at least one loss or model output")
        if t.shape:
            raise self.b.fail(e.span, f"the loss must be one number, but this is {t}",
                              "reduce it: `mean(...)` or `sum(...)`")
        return term

    def typed(self, e: Any, what: str = "a loss") -> Typed:
        """``e`` as a term and its type; ``what`` (the loss reading it) names it in errors."""
        b = self.b
        if isinstance(e, ast.Number):
            return LossTerm("number", value=float(e.value), span=e.span), None
        if isinstance(e, ast.Name):
            if e.id in self.types:
                return LossTerm("output", name=e.id, span=e.span), self.types[e.id]
            if not b.defined(e.id, self.scope):
                raise b.fail(e.span, f"{what} reads model outputs, inputs or targets; `{e.id}` is none of them",
                             did_you_mean(e.id, self.types))
            value = b.lookup(e, self.scope)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise b.fail(e.span, f"`{e.id}` is not a number; a loss reads outputs, inputs, targets and numbers",
                             did_you_mean(e.id, self.types))
            return LossTerm("number", value=float(value), span=e.span), None
        if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*", "/"):
            (left, lt), (right, rt) = self.typed(e.left, what), self.typed(e.right, what)
            return (LossTerm("binop", name=e.op, children=(left, right), span=e.span),
                    self._broadcast(lt, rt, e))
        if isinstance(e, ast.Neg):
            inner, t = self.typed(e.operand, what)
            return LossTerm("neg", children=(inner,), span=e.span), t
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            name = e.func.id
            if name in self.losses:
                return self._loss_call(e, self.losses[name])
            if name == "arange":
                return self._arange(e)
            if name in FUNCTIONS:
                return self._function(e, FUNCTIONS[name])
            known = list(self.losses) + ["arange"] + list(FUNCTIONS)
            raise b.fail(e.func.span, f"unknown loss `{name}`", did_you_mean(name, known) or BUILT)
        raise b.fail(e.span, BUILT)

    def tensor(self, e: Any, what: str) -> tuple[LossTerm, TensorType]:
        term, t = self.typed(e, what)
        if t is None:
            got = e.id if isinstance(e, ast.Name) else "a number"
            raise self.b.fail(e.span, f"{what} reads model outputs, inputs or targets; `{got}` is none of them",
                              did_you_mean(got, self.types) if isinstance(e, ast.Name) else None)
        return term, t

    def _loss_call(self, e: ast.Call, schema: Any) -> Typed:
        positional = [a for a in e.args if a.name is None]
        if len(positional) < schema.tensors:
            raise self.b.fail(e.span, f"`{schema.name}` needs {schema.tensors} tensors, got {len(positional)}")
        typed = [self.tensor(a.value, f"`{schema.name}`") for a in positional[:schema.tensors]]
        rest = tuple(a for a in e.args if a not in positional[:schema.tensors])
        options = self.options(schema, rest, self.scope, self.b, e.span)
        names = tuple(a.value.id if isinstance(a.value, ast.Name) else "" for a in positional[:schema.tensors])
        term = LossTerm("call", name=schema.name, args=names, options=tuple(options.items()),
                        children=tuple(t for t, _ in typed), span=e.span)
        if len(typed) >= 2:
            shown = [f"`{a.value.id}`" if isinstance(a.value, ast.Name) else "the expression" for a in positional[:2]]
            self.check_call(term, shown, [t for _, t in typed], self.b)
        return term, TensorType("float32", ())

    def _arange(self, e: ast.Call) -> Typed:
        b = self.b
        if len(e.args) != 1 or e.args[0].name is not None:
            raise b.fail(e.span, "`arange` takes one size: `arange(B)` or `arange(10)`")
        arg = e.args[0].value
        if isinstance(arg, ast.Name) and arg.id in self.sizes:
            size: Any = Sym.name(arg.id)
        else:
            value = b.eval(arg, self.scope)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise b.fail(arg.span, f"`arange` counts to a size of the inputs ({', '.join(sorted(self.sizes))}) "
                             f"or a whole number >= 1, got {value!r}")
            size = value
        return LossTerm("fn", name="arange", args=(str(size),), span=e.span), TensorType("int64", (size,))

    def _function(self, e: ast.Call, fn: Function) -> Typed:
        b = self.b
        positional = [a for a in e.args if a.name is None]
        keywords = {a.name: a for a in e.args if a.name is not None}
        allowed = {"value"} if fn.name == "full_like" else set()
        if len(positional) != fn.arity or set(keywords) - allowed:
            extra = ", value = N" if allowed else ""
            raise b.fail(e.span, f"`{fn.name}` takes one tensor: `{fn.name}(x{extra})`")
        options: dict[str, float] = {}
        if fn.name == "full_like":
            if "value" not in keywords:
                raise b.fail(e.span, "`full_like` needs `value`: `full_like(x, value = 0.9)`")
            value = b.eval(keywords["value"].value, self.scope)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise b.fail(keywords["value"].span, f"`full_like` value must be a number, got {value!r}")
            options["value"] = float(value)
        child, t = self.tensor(positional[0].value, f"`{fn.name}`")
        if fn.name == "transpose" and t.rank < 2:
            raise b.fail(e.span, f"`transpose` swaps the last two axes; its input is {t}")
        return LossTerm("fn", name=fn.name, children=(child,), options=tuple(options.items()), span=e.span), fn.result(t)

    def _broadcast(self, a: TensorType | None, c: TensorType | None, e: Any) -> TensorType | None:
        """numpy's broadcasting on shapes that may be symbolic: sizes equal, or one of them 1."""
        if a is None or c is None:
            return a or c
        shape = []
        for i in range(1, max(a.rank, c.rank) + 1):
            x = a.shape[-i] if i <= a.rank else 1
            y = c.shape[-i] if i <= c.rank else 1
            if x == y or y == 1:
                shape.append(x)
            elif x == 1:
                shape.append(y)
            elif is_static(x) and is_static(y):
                raise self.b.fail(e.span, f"cannot combine {a} and {c}: their shapes do not broadcast")
            else:
                shape.append(x)
        dtype = a.dtype if a.is_float else c.dtype
        return TensorType(dtype, tuple(reversed(shape)))

