"""Text -> AST. Lark errors are caught here and re-raised as flashc diagnostics."""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from flashc.diagnostics import FlashError, Span, error
from flashc.syntax import ast
from flashc.syntax.grammar import flash_parser

CLOSERS = {"(": ")", "[": "]", "{": "}"}
OPENER_KIND = {"(": "call", "[": "shape", "{": "block"}
# How deeply constructs may nest (brackets, calls, blocks): far beyond any real spec, far below
# what the recursive builder can evaluate. Left-associative chains (`a |> f |> g`, `a + b + c`)
# add no depth along their left side: a 100,000-stage pipeline is one level.
MAX_NESTING = 64


def _parser() -> Lark:
    return flash_parser()  # LALR tables cached on disk (flashc.syntax.grammar)


def _span(file: str, meta: Any) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


def _number(text: str) -> int | float:
    text = text.replace("_", "")
    return int(text) if text.isdigit() else float(text)


def _unquote(tok: Token) -> str:
    body = tok[1:-1]
    return body.encode("utf-8").decode("unicode_escape") if "\\" in body else body


class _ToAst:
    """Builds frozen AST nodes; every node gets the span Lark recorded.

    Each method takes a rule's meta and its children (already converted), as a Lark
    ``Transformer`` with ``v_args(meta=True, inline=True)`` would; :meth:`transform` walks
    the tree with an explicit stack instead of recursion, so long chains cannot overflow it.
    """

    def __init__(self, file: str) -> None:
        self.file = file

    def transform(self, tree: Tree) -> Any:
        values: list[Any] = []  # converted children, innermost first
        depths: list[int] = []  # each one's nesting depth
        todo: list[tuple[Any, bool]] = [(tree, False)]
        while todo:
            node, ready = todo.pop()
            if not isinstance(node, Tree):
                values.append(node)
                depths.append(0)
            elif not ready:
                todo.append((node, True))
                todo.extend((child, False) for child in reversed(node.children))
            else:
                n = len(node.children)
                kids, kid_depths = values[len(values) - n:], depths[len(depths) - n:]
                del values[len(values) - n:], depths[len(depths) - n:]
                value = getattr(self, node.data)(node.meta, *kids)
                depth = _nesting(value, kid_depths)
                if depth > MAX_NESTING:
                    raise error(getattr(value, "span", self.s(node.meta)),
                                f"this nests more than {MAX_NESTING} levels deep",
                                "name intermediate results (`h = ...`) instead of nesting brackets, calls or blocks")
                values.append(value)
                depths.append(depth)
        return values[0]

    def s(self, meta: Any) -> Span:
        return _span(self.file, meta)

    # expressions
    def name(self, meta: Any, tok: Token) -> ast.Name:
        return ast.Name(self.s(meta), str(tok))

    def int(self, meta: Any, tok: Token) -> ast.Number:
        value = _number(tok)
        if isinstance(value, float) and math.isinf(value):
            raise error(self.s(meta), f"the number {str(tok)[:40]} is too large (the largest is about 1.8e308)")
        if isinstance(value, int) and value >= 2**63:
            raise error(self.s(meta), "whole numbers must be below 2**63 (9,223,372,036,854,775,808)")
        return ast.Number(self.s(meta), value)

    float = int

    def string(self, meta: Any, tok: Token) -> ast.String:
        return ast.String(self.s(meta), _unquote(tok))

    def tuple(self, meta: Any, first: Any, *rest: Any) -> ast.Tuple:
        return ast.Tuple(self.s(meta), (first, *(r for r in rest if r is not None)))

    def _bin(op: str):  # noqa: N805  (a factory used in the class body)
        def build(self: _ToAst, meta: Any, left: Any, right: Any) -> ast.BinOp:
            return ast.BinOp(self.s(meta), op, left, right)

        return build

    add, sub, mul, div, floordiv, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("//"), _bin("**")

    def neg(self, meta: Any, operand: Any) -> ast.Neg:
        return ast.Neg(self.s(meta), operand)

    def compare(self, meta: Any, left: Any, op: Token, right: Any) -> ast.Compare:
        return ast.Compare(self.s(meta), str(op), left, right, _tok_span(self.file, op))

    def and_(self, meta: Any, left: Any, right: Any) -> ast.Logic:
        return ast.Logic(self.s(meta), "and", left, right)

    def or_(self, meta: Any, left: Any, right: Any) -> ast.Logic:
        return ast.Logic(self.s(meta), "or", left, right)

    def not_(self, meta: Any, operand: Any) -> ast.Not:
        return ast.Not(self.s(meta), operand)

    def pipe(self, meta: Any, left: Any, right: Any) -> ast.Pipe:
        return ast.Pipe(self.s(meta), left, right)

    def call(self, meta: Any, func: Any, *args: Any) -> ast.Call:
        return ast.Call(self.s(meta), func, tuple(a for a in args if a is not None))

    def attr(self, meta: Any, obj: Any, name: Token) -> ast.Attr:
        return ast.Attr(self.s(meta), obj, str(name))

    def named(self, meta: Any, value: Any, name: Token) -> ast.Named:
        return ast.Named(self.s(meta), value, str(name), _tok_span(self.file, name))

    def arg(self, meta: Any, value: Any) -> ast.Arg:
        return ast.Arg(self.s(meta), None, value)

    def kwarg(self, meta: Any, name: Token, value: Any) -> ast.Arg:
        return ast.Arg(self.s(meta), str(name), value)

    # statements
    def tensor_type(self, meta: Any, dtype: Token, *dims: Any) -> ast.TypeExpr:
        return ast.TypeExpr(self.s(meta), str(dtype), _tok_span(self.file, dtype), tuple(d for d in dims if d is not None))

    def param(self, meta: Any, name: Token, default: Any) -> ast.ParamDecl:
        return ast.ParamDecl(self.s(meta), str(name), default)

    block_param = param

    def input_decl(self, meta: Any, name: Token, type_: ast.TypeExpr) -> ast.InputDecl:
        return ast.InputDecl(self.s(meta), str(name), type_)

    def assign(self, meta: Any, *parts: Any) -> ast.Assign:
        return ast.Assign(self.s(meta), tuple(str(p) for p in parts[:-1]), parts[-1])

    def output(self, meta: Any, name: Token, value: Any) -> ast.Output:
        return ast.Output(self.s(meta), str(name), value)

    def return_stmt(self, meta: Any, *values: Any) -> ast.Return:
        return ast.Return(self.s(meta), values)

    def block(self, meta: Any, name: Token, *rest: Any) -> ast.BlockDef:
        params = tuple(r for r in rest if isinstance(r, ast.ParamDecl))
        body = tuple(r for r in rest if r is not None and not isinstance(r, ast.ParamDecl))
        return ast.BlockDef(self.s(meta), str(name), params, body)

    def model(self, meta: Any, name: Token, *rest: Any) -> ast.Model:
        params = tuple(r for r in rest if isinstance(r, ast.ParamDecl))
        body = tuple(r for r in rest if r is not None and not isinstance(r, ast.ParamDecl))
        return ast.Model(self.s(meta), str(name), params, body)

    def target(self, meta: Any, name: Token, type_: ast.TypeExpr) -> ast.Target:
        return ast.Target(self.s(meta), str(name), type_)

    def loss(self, meta: Any, expr: Any) -> ast.Loss:
        return ast.Loss(self.s(meta), expr)

    def regularize(self, meta: Any, expr: Any, *patterns: Token) -> ast.Regularize:
        return ast.Regularize(self.s(meta), expr, tuple(_unquote(p) for p in patterns))

    def setting(self, meta: Any, name: Token, *args: ast.Arg) -> ast.Setting:
        return ast.Setting(self.s(meta), str(name), args)

    def phase(self, meta: Any, name: Token, *body: Any) -> ast.PhaseBlock:
        return ast.PhaseBlock(self.s(meta), str(name), _tok_span(self.file, name), body)

    def train(self, meta: Any, name: Token, *body: Any) -> ast.Train:
        return ast.Train(self.s(meta), str(name), _tok_span(self.file, name), body)

    def import_from(self, meta: Any, path: Token, *names: Token) -> ast.Import:
        return ast.Import(self.s(meta), _unquote(path), tuple(ast.Name(_tok_span(self.file, n), str(n)) for n in names))

    def import_all(self, meta: Any, path: Token) -> ast.Import:
        return ast.Import(self.s(meta), _unquote(path), None)

    def start(self, meta: Any, *items: Any) -> ast.Module:
        span = Span(self.file, 1, 1, 1, 1)
        return ast.Module(
            span,
            self.file,
            tuple(i for i in items if isinstance(i, ast.Import)),
            tuple(i for i in items if isinstance(i, ast.Model)),
            tuple(i for i in items if isinstance(i, ast.Train)),
        )


def parse(text: str, file: str = "<input>") -> ast.Module:
    """Parse .flash source; any syntax error becomes a FlashError with a caret."""
    with gc_paused():
        try:
            tree = _parser().parse(text)
        except UnexpectedInput as exc:
            raise _syntax_error(exc, text, file) from None
        try:
            return _ToAst(file).transform(tree)
        except FlashError:
            raise
        except Exception as exc:  # a callback failed (a literal Python cannot read): still the user's input
            raise error(Span(file, 1, 1, 1, 1), f"cannot read the spec: {exc}") from None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cycle collector while building trees that hold no cycles.

    Every collection walks every live object, so with a growing tree it runs ever longer:
    a 100,000-stage pipeline took twice as long with it as without.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _nesting(node: Any, kids: list[int]) -> int:
    """How deep ``node`` nests, given its children's depths: the left side of a chain is free."""
    if (isinstance(node, ast.Pipe) or (isinstance(node, ast.BinOp) and node.op != "**")) and kids:
        return max(kids[0], 1 + max(kids[1:], default=0))
    if isinstance(node, ast.Arg):  # an argument is its value: `f(g(x))` nests two levels
        return max(kids, default=0)
    return 1 + max(kids, default=0)


# --- turning Lark's errors into sentences ---------------------------------------------------

def _describe_terminal(name: str) -> str:
    words = {"NAME": "a name", "INT": "a number", "FLOAT": "a number", "STRING": "a string", "$END": "end of file"}
    if name in words:
        return words[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"`{pattern.value}`" if pattern.type == "str" else name.lower()


def _open_brackets(text: str, line: int, col: int) -> list[tuple[str, int, int]]:
    """Brackets still open before (line, col), skipping strings and comments."""
    stack: list[tuple[str, int, int]] = []
    in_string = False
    for ln, row in enumerate(text.split("\n"), start=1):
        if ln > line:
            break
        in_comment = False
        for cn, ch in enumerate(row, start=1):
            if ln == line and cn >= col:
                break
            if in_comment:
                break
            if in_string:
                in_string = ch != '"'
            elif ch == '"':
                in_string = True
            elif ch == "#":
                in_comment = True
            elif ch in CLOSERS:
                stack.append((ch, ln, cn))
            elif ch in CLOSERS.values() and stack and CLOSERS[stack[-1][0]] == ch:
                stack.pop()
    return stack


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> FlashError:
    line, col = max(exc.line, 1), max(exc.column, 1)
    lines = text.split("\n")
    while len(lines) > 1 and not lines[-1].strip():  # point at the end of the last written line
        lines.pop()
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        line = len(lines)
        col = len(lines[-1]) + 1
    span = Span(file, line, col, line, col + 1)
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        hint = "`|>` is the pipeline operator" if ch == "|" else None
        if ch == "'":
            hint = 'strings use double quotes: "..."'
        return error(span, f"unexpected character `{ch}`", hint)
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    if tok.type != "$END":
        span = _tok_span(file, tok)
    found = "end of file" if tok.type == "$END" else f"`{tok}`"
    expected = sorted({_describe_terminal(t) for t in exc.expected})
    opened = _open_brackets(text, line, col)
    if opened:
        ch, oln, ocol = opened[-1]
        closer = CLOSERS[ch]
        if f"`{closer}`" in expected:
            return error(
                span,
                f"expected `{closer}` to close the {OPENER_KIND[ch]} opened at {oln}:{ocol}, found {found}",
                _hint(tok, expected),
            )
    if len(expected) > 6:
        message = f"unexpected {found}"
    else:
        message = f"unexpected {found}; expected {', '.join(expected[:-1]) + ' or ' if len(expected) > 1 else ''}{expected[-1]}"
    return error(span, message, _hint(tok, expected))


def _hint(tok: Token, expected: list[str]) -> str | None:
    if tok.type == "NAME" and "`|>`" in expected:
        return f"to apply `{tok}`, chain it with `|>`"
    if tok.type == "EQUAL" and "`:`" in expected:
        return "an input is declared as `input x: float32[B, 4]`"
    if set(expected) == {"`,`", "`=`"}:
        return "a statement is `name = expression`; to apply a layer to a value, chain it with `|>`"
    if "`:`" in expected:
        return "an input needs a type: `input x: float32[B, 4]`"
    return None
