"""Expressions: names, attributes, arithmetic on numbers, dims and tensors, calls and pipes."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from flashc.build import limits
from flashc.build.identifiers import number_problem
from flashc.build.scope import BUILTINS, CONSTANTS, Scope
from flashc.build.state import BuilderState
from flashc.build.values import Block, Layer, Moe, Poison, Repeat, Sequential, Tensor, WeightRef, _Abort, describe
from flashc.diagnostics import Span, did_you_mean
from flashc.ir.dims import Sym
from flashc.ops.base import REGISTRY
from flashc.syntax import ast


def chained(e: Any) -> bool:
    """A link of a left-associative chain: a pipe, or arithmetic other than the right-associative `**`."""
    return isinstance(e, ast.Pipe) or (isinstance(e, ast.BinOp) and e.op != "**")


class Expressions(BuilderState):
    def eval(self, e: Any, scope: Scope) -> Any:
        """Evaluate in ``scope``; values an anonymous op makes here are named under its prefix."""
        outer, self.prefix = self.prefix, scope.prefix
        try:
            value = self._eval(e, scope)
        finally:
            self.prefix = outer
        if isinstance(value, Poison):
            raise _Abort()
        return value

    def _eval(self, e: Any, scope: Scope) -> Any:
        """One level deeper; chains run as loops, so only real nesting counts against the limit."""
        if self.depth >= limits.MAX_DEPTH:
            raise self.fail(getattr(e, "span", Span.unknown(self.file)),
                            f"expressions and blocks nest more than {limits.MAX_DEPTH} levels deep here",
                            "name intermediate results (`h = ...`) instead of nesting calls and blocks")
        self.depth += 1
        try:
            if chained(e):
                return self.chain(e, scope)
            return self.eval_node(e, scope)
        finally:
            self.depth -= 1

    def chain(self, e: ast.Pipe | ast.BinOp, scope: Scope) -> Any:
        """`x |> f |> g |> ...` and `a + b - c ...`, evaluated along their left side in a loop:
        a 100,000-stage pipeline is one level deep, not 100,000."""
        links: list[ast.Pipe | ast.BinOp] = []
        while chained(e):
            links.append(e)
            e = e.left
        value = self.eval(e, scope)
        for link in reversed(links):
            if isinstance(link, ast.BinOp):
                value = self.arith(link.op, value, self.eval(link.right, scope), link.span)
            else:
                value = self.pipe(link, value, scope)
            if isinstance(value, Poison):
                raise _Abort()
        return value

    def pipe(self, e: ast.Pipe, left: Any, scope: Scope) -> Any:
        """`left |> right`: ``left`` (a tuple spreads) becomes the first argument(s) of ``right``."""
        piped = left if isinstance(left, tuple) else (left,)
        if isinstance(e.right, ast.Call):
            return self.call(e.right, scope, [(v, e.left.span) for v in piped])
        return self.apply(self.callee(e.right, scope), [(v, e.left.span) for v in piped], {}, e.right.span, scope)

    def eval_node(self, e: Any, scope: Scope) -> Any:
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.String):
            return e.value
        if isinstance(e, ast.Name):
            return self.lookup(e, scope)
        if isinstance(e, ast.Tuple):
            return tuple(self.eval(i, scope) for i in e.items)
        if isinstance(e, ast.Neg):
            return self.arith("-", 0, self.eval(e.operand, scope), e.span, negate=True)
        if isinstance(e, ast.BinOp) and e.op == "**":
            return self.power(self.eval(e.left, scope), self.eval(e.right, scope), e.span)
        if isinstance(e, ast.Compare):
            return self.compare(e, scope)
        if isinstance(e, ast.Logic):
            return self.logic(e, scope)
        if isinstance(e, ast.Not):
            return self.negation(e, scope)
        if isinstance(e, ast.Attr):
            return self.attribute(e, scope)
        if isinstance(e, ast.Named):
            return self.named(e, scope)
        if isinstance(e, ast.Call):
            return self.call(e, scope, None)
        raise self.fail(getattr(e, "span", Span.unknown(self.file)), "unsupported expression")

    def lookup(self, e: ast.Name, scope: Scope) -> Any:
        with contextlib.suppress(KeyError):
            return scope.lookup(e.id)
        if e.id in CONSTANTS:
            return CONSTANTS[e.id]
        if e.id in REGISTRY:
            return Layer(REGISTRY[e.id], {}, {}, {}, e.span)
        candidates = scope.names() | set(REGISTRY) | set(CONSTANTS) | set(BUILTINS)
        raise self.fail(e.span, f"undefined name `{e.id}`", did_you_mean(e.id, candidates))

    def named(self, e: ast.Named, scope: Scope) -> Any:
        """`linear(d) as q_proj` binds the layer to `q_proj` here, so its weights are `q_proj.*`."""
        value = self.eval(e.value, scope)
        if not isinstance(value, (Layer, Block, Repeat, Sequential, Moe)):
            raise self.fail(e.span, f"`as` names a layer or a block, got {describe(value)}",
                            f"to name a tensor, assign it: `{e.name} = ...`")
        if value.path is not None:
            raise self.fail(e.name_span, f"{describe(value)} already has a name", "`as` names a layer where it is made")
        self.bind(e.name, value, scope, e.name_span)
        return scope.vars[e.name]

    def attribute(self, e: ast.Attr, scope: Scope) -> Any:
        obj = self.eval(e.obj, scope)
        if isinstance(obj, Layer):
            if obj.weights is None:
                raise self.fail(e.span, f"layer `{obj.path}` has no weights yet", "apply the layer before tying its weights")
            if e.name not in obj.weights:
                raise self.fail(
                    e.span,
                    f"layer `{obj.path}` has no weight `{e.name}`",
                    did_you_mean(e.name, obj.weights) or f"its weights are: {', '.join(obj.weights)}",
                )
            path = obj.weights[e.name]
            return WeightRef(path, self.weights[path].spec)
        if isinstance(obj, Tensor) and e.name in ("shape", "rank"):
            t = obj.value.type
            return t.shape if e.name == "shape" else t.rank
        if isinstance(obj, Tensor) and e.name == "weight":  # `table = parameter(32, 8)`: `table.weight` ties to it
            made_by = next((n for n in reversed(self.nodes) if obj.value in n.outputs), None)
            if made_by is not None and made_by.op.name == "parameter":
                path = dict(made_by.weights)["weight"]
                return WeightRef(path, self.weights[path].spec)
        raise self.fail(e.span, f"{describe(obj)} has no attribute `{e.name}`")

    def arith(self, op: str, a: Any, b: Any, span: Span, negate: bool = False) -> Any:
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            return self.tensor_arith(op, a, b, span, negate)
        numeric = (int, float, Sym)
        if not (isinstance(a, numeric) and isinstance(b, numeric)) or isinstance(a, bool) or isinstance(b, bool):
            raise self.fail(span, f"cannot apply `{op}` to {describe(a)} and {describe(b)}")
        if isinstance(a, Sym) or isinstance(b, Sym):
            if op == "/" or isinstance(a, float) or isinstance(b, float):
                raise self.fail(span, "symbolic dimensions support only + - * and //")
            return {"+": a + b, "-": a - b, "*": a * b, "//": a // b}[op]
        if op in ("/", "//") and b == 0:
            raise self.fail(span, "division by zero")
        try:
            result = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0, "//": a // b if b else 0}[op]
        except OverflowError:
            result = math.inf
        problem = number_problem(result)
        if problem:
            raise self.fail(span, f"`{op}` gives a number flashc cannot hold: {problem}")
        return result

    def tensor_arith(self, op: str, a: Any, b: Any, span: Span, negate: bool) -> Tensor:
        if negate:
            return self.emit(REGISTRY["neg"], {}, [b.value], span, scope=None)
        names = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
        if op not in names:
            raise self.fail(span, f"`{op}` is not defined for tensors", "use `/` for tensors")
        cls = REGISTRY[names[op]]
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return self.emit(cls, {}, [a.value, b.value], span, scope=None)
        tensor, other, first = (a, b, False) if isinstance(a, Tensor) else (b, a, True)
        if isinstance(other, bool) or not isinstance(other, (int, float)):
            raise self.fail(span, f"cannot apply `{op}` to {describe(a)} and {describe(b)}")
        return self.emit(cls, {"scalar": float(other), "scalar_first": first}, [tensor.value, None], span, scope=None)

    # --- calls ----------------------------------------------------------------------------
    def callee(self, e: Any, scope: Scope) -> Any:
        if isinstance(e, ast.Name) and e.id in BUILTINS and not self.defined(e.id, scope):
            return e.id
        return self.eval(e, scope)

    def call(self, e: ast.Call, scope: Scope, piped: list[tuple[Any, Span]] | None) -> Any:
        """Evaluate arguments to (value, span) pairs; a piped value comes first."""
        func = self.callee(e.func, scope)
        positional: list[tuple[Any, Span]] = list(piped or ())
        keywords: dict[str, Any] = {}
        flags = self.flag_names(func)
        for arg in e.args:
            if arg.name is not None:
                if arg.name in keywords:
                    raise self.fail(arg.span, f"keyword `{arg.name}` given twice")
                keywords[arg.name] = (self.argument(func, arg, scope), arg.span)
            elif isinstance(arg.value, ast.Name) and arg.value.id in flags and not self.defined(arg.value.id, scope):
                keywords[arg.value.id] = (True, arg.span)
            else:
                positional.append((self.argument(func, arg, scope), arg.span))
        return self.apply(func, positional, keywords, e.span, scope)

    @staticmethod
    def flag_names(func: Any) -> set[str]:
        """Boolean parameters a bare name can switch on: `attention(heads, causal)`."""
        if isinstance(func, Layer):
            return {k for k, p in func.op.params.items() if p.kind is bool}
        if func == "repeat":
            return {"shared"}
        if func == "moe":
            return {"normalize", "dense"}
        return set()
