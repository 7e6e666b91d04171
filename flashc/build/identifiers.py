"""Which names a spec may declare, and which numbers it may hold.

Names in a spec become Python names in the generated code: a model is a class, an
input a parameter of `forward`, a layer or block an attribute of an `nn.Module`
(its state-dict prefix). Rather than mangle them (which would change state-dict
keys and surprise whoever loads a reference checkpoint), names that cannot be used
as they are are refused at check, with the reason:

- a Python keyword (`class`, `lambda`, `None`) anywhere a spec declares a name;
- a builtin (`object`, `zip`) as a model or input name: it would shadow Python's own;
- for a layer or block: a name starting with `_` (torch keeps `_modules`,
  `__class__`, `__init__`, ... there) or one of :data:`MODULE_ATTRS`.

Tensor values that happen to be named like builtins are renamed in the generated
code only (`zip` -> `zip_1`); their names appear nowhere else.

Numbers must be finite and whole numbers must fit int64: `1e999` is not a number
flashc can write into a graph, and no dimension or count needs more than 2**63.
"""

from __future__ import annotations

import builtins
import keyword
import math
from typing import Any

from flashc.build.scope import MODULE_ATTRS
from flashc.diagnostics import Diagnostic, Span
from flashc.syntax import ast

KEYWORDS = frozenset(keyword.kwlist)
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_"))
INT_LIMIT = 2**63


def keyword_problem(name: str) -> str | None:
    if name in KEYWORDS:
        return f"`{name}` is a Python keyword; names in a spec become Python names in the generated code"
    return None


def builtin_problem(name: str, what: str) -> str | None:
    if name in BUILTIN_NAMES:
        return f"`{name}` cannot name {what}: it would shadow Python's builtin `{name}` in the generated code"
    return None


def layer_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a layer's or block's attribute name in an nn.Module (None: it can)."""
    if name in KEYWORDS:
        return keyword_problem(name)
    if name.startswith("_"):
        return f"`{name}` cannot name a layer: torch keeps its own module attributes under names starting with `_`"
    if name in MODULE_ATTRS:
        return f"`{name}` cannot name a layer: torch modules already use it"
    return None


def number_problem(value: Any) -> str | None:
    """Why a number (or a tuple of them) cannot be held in a spec (None: it can)."""
    if isinstance(value, tuple):
        return next((p for p in map(number_problem, value) if p), None)
    if isinstance(value, float) and not math.isfinite(value):
        return f"the number {value} is not finite"
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value < INT_LIMIT:
        return f"the whole number {value:.4g} does not fit in 64 bits" if abs(value) < 10**300 else \
            "the whole number does not fit in 64 bits"
    return None


def check_declarations(module: ast.Module) -> list[Diagnostic]:
    """Every name a module declares that the generated code could not use as it is."""
    out: list[Diagnostic] = []

    def add(span: Span, problem: str | None, hint: str | None = None) -> None:
        if problem:
            out.append(Diagnostic(span, problem, hint))

    def body(stmts: tuple) -> None:
        for s in stmts:
            if isinstance(s, ast.BlockDef):
                block(s)
            elif isinstance(s, ast.InputDecl):
                add(s.span, keyword_problem(s.name) or builtin_problem(s.name, "an input"), f"try `{s.name}_in`")
            elif isinstance(s, ast.Assign):
                for t in s.targets:
                    add(s.span, keyword_problem(t), f"try `{t}_`")
            elif isinstance(s, ast.Output):
                add(s.span, keyword_problem(s.name), f"try `{s.name}_out`")

    def block(b: ast.BlockDef) -> None:
        # `forward` and the like are renamed where a block's weights are named (`forward_block`)
        problem = keyword_problem(b.name) or (layer_name_problem(b.name) if b.name.startswith("_") else None)
        add(b.span, problem and problem.replace("name a layer", "name a block"), f"try `{b.name.strip('_')}Block`")
        for p in b.params:
            add(p.span, keyword_problem(p.name), f"try `{p.name}_`")
        body(b.body)

    for m in module.models:
        add(m.span, keyword_problem(m.name) or builtin_problem(m.name, "a model"), f"try `{m.name.capitalize()}Model`")
        for p in m.params:
            add(p.span, keyword_problem(p.name), f"try `{p.name}_`")
        body(m.body)
    return out
