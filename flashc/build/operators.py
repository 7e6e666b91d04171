"""Operators with typing rules: comparisons, `and` / `or` / `not`, `**`, and dtypes written bare.

Numbers, booleans and dims are computed here at build time; tensors become ops
whose `infer` holds the dtype rules (flashc/ops/compare.py, elementwise.py,
math.py), so the checker is the one gate for both backends.
"""

from __future__ import annotations

import math
from typing import Any

from flashc.build.identifiers import number_problem
from flashc.build.scope import Scope
from flashc.build.state import BuilderState
from flashc.build.values import DType, Layer, Tensor, describe
from flashc.diagnostics import Span, did_you_mean
from flashc.ir.dims import Sym
from flashc.ir.types import DTYPES
from flashc.ops.base import REGISTRY
from flashc.ops.elementwise import BOOL_HINT
from flashc.syntax import ast

COMPARE_OPS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Operators(BuilderState):
    def compare(self, e: ast.Compare, scope: Scope) -> Any:
        if isinstance(e.left, ast.Compare) and (e.left.span.line, e.left.span.col) == (e.span.line, e.span.col):  # not `(a < b) < c`
            raise self.fail(e.op_span, "comparisons do not chain", "write `(a < b) and (b < c)`")
        a, b = self.eval(e.left, scope), self.eval(e.right, scope)
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            return self.compare_tensors(e.op, a, b, e.span)
        if isinstance(a, Sym) or isinstance(b, Sym):
            raise self.fail(e.span, f"cannot compare the symbolic dimensions {describe(a)} and {describe(b)} while building",
                            "their sizes are known only when the model runs")
        if _number(a) and _number(b):
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[e.op]
        if e.op in ("==", "!=") and type(a) is type(b) and isinstance(a, (bool, str)):
            return (a == b) == (e.op == "==")
        raise self.fail(e.span, f"cannot compare {describe(a)} with {describe(b)} by `{e.op}`")

    def compare_tensors(self, op: str, a: Any, b: Any, span: Span) -> Tensor:
        cls = REGISTRY[COMPARE_OPS[op]]
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return self.emit(cls, {}, [a.value, b.value], span, scope=None)
        tensor, other, first = (a, b, False) if isinstance(a, Tensor) else (b, a, True)
        if tensor.value.type.dtype == "bool":
            if not isinstance(other, bool):
                raise self.fail(span, f"cannot compare the bool mask {tensor.value.type} with {describe(other)}",
                                "compare a mask with `true` or `false`, or with another mask")
        elif not _number(other):
            raise self.fail(span, f"cannot compare {describe(a)} with {describe(b)} by `{op}`",
                            "compare a tensor with a number or with a tensor of its dtype")
        return self.emit(cls, {"scalar": float(other), "scalar_first": first}, [tensor.value, None], span, scope=None)

    def logic(self, e: ast.Logic, scope: Scope) -> Any:
        a, b = self.eval(e.left, scope), self.eval(e.right, scope)
        if isinstance(a, bool) and isinstance(b, bool):
            return (a and b) if e.op == "and" else (a or b)
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return self.emit(REGISTRY[f"logical_{e.op}"], {}, [a.value, b.value], e.span, scope=None)
        raise self.fail(e.span, f"`{e.op}` combines two bool masks or two booleans, got {describe(a)} and {describe(b)}",
                        "a comparison gives a mask: `(x > 0) and (x < 1)`")

    def negation(self, e: ast.Not, scope: Scope) -> Any:
        value = self.eval(e.operand, scope)
        if isinstance(value, bool):
            return not value
        if isinstance(value, Tensor):
            return self.emit(REGISTRY["logical_not"], {}, [value.value], e.span, scope=None)
        raise self.fail(e.span, f"`not` takes a bool mask or a boolean, got {describe(value)}")

    def power(self, a: Any, b: Any, span: Span) -> Any:
        """`a ** b`: numbers at build time, else the `pow` op (float tensors)."""
        tensors = [v for v in (a, b) if isinstance(v, Tensor)]
        for t in tensors:
            if t.value.type.dtype == "bool":
                raise self.fail(span, f"`**` is arithmetic and {t.value.type} is bool", BOOL_HINT)
        cls = REGISTRY["pow"]
        if len(tensors) == 2:
            return self.emit(cls, {}, [a.value, b.value], span, scope=None)
        if tensors:
            other = b if isinstance(a, Tensor) else a
            if not _number(other):
                raise self.fail(span, f"cannot apply `**` to {describe(a)} and {describe(b)}")
            attrs = {"exponent": float(b)} if isinstance(a, Tensor) else {"base": float(a)}
            return self.emit(cls, attrs, [tensors[0].value, None], span, scope=None)
        if not (_number(a) and _number(b)):
            raise self.fail(span, f"cannot apply `**` to {describe(a)} and {describe(b)}",
                            "symbolic dimensions support only + - * and //" if isinstance(a, Sym) or isinstance(b, Sym) else None)
        if isinstance(a, int) and isinstance(b, int) and abs(a) >= 2 and b * math.log2(abs(a)) > 64:
            raise self.fail(span, f"{a} ** {b} does not fit in 64 bits")  # refused before Python builds the number
        try:
            result = a ** b
        except ZeroDivisionError:
            raise self.fail(span, "zero to a negative power") from None
        except OverflowError:
            raise self.fail(span, f"{a} ** {b} is too large") from None
        if isinstance(result, complex):
            raise self.fail(span, f"{a} ** {b} is not a real number")
        problem = number_problem(result)
        if problem:
            raise self.fail(span, f"`**` gives a number flashc cannot hold: {problem}")
        return result

    def argument(self, func: Any, arg: ast.Arg, scope: Scope) -> Any:
        """An argument's value; a bare undefined name where the op takes a dtype is that dtype."""
        wanted = {k for k, p in func.op.params.items() if p.kind == "dtype"} if isinstance(func, Layer) else set()
        bare = isinstance(arg.value, ast.Name) and not self.defined(arg.value.id, scope) and arg.value.id not in REGISTRY
        # A positional bare name is a dtype when it is one, or when the op's first setting is the dtype
        # (`cast(m, flaot32)` says "not a dtype"); `zeros(B, Q)` still says Q is undefined.
        first = next(iter(func.op.params.values()), None) if isinstance(func, Layer) else None
        positional = bare and (arg.value.id in DTYPES or (first is not None and first.kind == "dtype"))
        if wanted and bare and (arg.name in wanted or (arg.name is None and positional)):
            return self.dtype_name(arg.value)
        return self.eval(arg.value, scope)

    def dtype_name(self, e: ast.Name) -> DType:
        if e.id in DTYPES:
            return DType(e.id)
        raise self.fail(e.span, f"`{e.id}` is not a dtype", did_you_mean(e.id, DTYPES) or f"dtypes: {', '.join(DTYPES)}")
