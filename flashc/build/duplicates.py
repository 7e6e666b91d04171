"""Names a spec declares twice: refused at `check` instead of the last (or first) silently winning.

Two models of one name made `--model M` pick the first and ignore the second; two blocks
of one name in one body let the second replace the first; a parameter listed twice took
the last default; a second `train M` section was never read. Each is reported at the
second declaration, naming the line of the first.
"""

from __future__ import annotations

from collections.abc import Iterable

from flashc.diagnostics import Diagnostic, Span
from flashc.syntax import ast


def _repeats(items: Iterable[tuple[str, Span]], what: str, out: list[Diagnostic]) -> None:
    """``what`` names the thing, with ``{name}`` where its name goes."""
    first: dict[str, Span] = {}
    for name, span in items:
        if name in first:
            out.append(Diagnostic(span, f"{what.format(name=name)} is declared twice (first at line "
                                  f"{first[name].line})", "rename or remove one of them"))
        else:
            first[name] = span


def _body(stmts: tuple, out: list[Diagnostic]) -> None:
    blocks = [s for s in stmts if isinstance(s, ast.BlockDef)]
    _repeats(((b.name, b.span) for b in blocks), "block `{name}`", out)
    for b in blocks:
        _repeats(((p.name, p.span) for p in b.params), f"parameter `{{name}}` of block {b.name}", out)
        _body(b.body, out)


def check_duplicates(module: ast.Module) -> list[Diagnostic]:
    """Every model, block, parameter and train section of ``module`` declared more than once."""
    out: list[Diagnostic] = []
    _repeats(((m.name, m.span) for m in module.models), "model `{name}`", out)
    _repeats(((t.model, t.span) for t in module.trains), "a train section for model `{name}`", out)
    for m in module.models:
        _repeats(((p.name, p.span) for p in m.params), f"parameter `{{name}}` of model {m.name}", out)
        _body(m.body, out)
    return out
