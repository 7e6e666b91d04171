"""Source spans and compiler-style error reports.

Every user-facing failure is a :class:`FlashError` carrying one or more
:class:`Diagnostic`; the CLI renders them and exits non-zero, so a bad spec
never shows a Python traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of a source file, 1-based lines and columns, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def unknown(file: str = "<input>") -> Span:
        return Span(file, 1, 1, 1, 1)

    @staticmethod
    def nowhere(label: str) -> Span:
        """A problem with no place in a source file (a data array, a checkpoint)."""
        return Span(label, 0, 0, 0, 0)

    def __str__(self) -> str:
        return self.file if self.line == 0 else f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One error with where it happened and what might fix it."""

    span: Span
    message: str
    hint: str | None = None
    severity: str = "error"

    def render(self, sources: dict[str, str] | None = None) -> str:
        lines = [f"{self.span}: {self.severity}: {self.message}"]
        text = (sources or {}).get(self.span.file)
        if text is not None:
            src_lines = text.split("\n")  # Lark counts only \n as a line break
            if 1 <= self.span.line <= len(src_lines):
                line = src_lines[self.span.line - 1].replace("\t", " ")
                lines.append(f"    {line}")
                start = self.span.col - 1
                if self.span.end_line == self.span.line and self.span.end_col > self.span.col:
                    width = self.span.end_col - self.span.col
                else:
                    width = max(1, len(line.rstrip()) - start)
                lines.append("    " + " " * start + "^" * max(1, width))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class FlashError(Exception):
    """One or more diagnostics; the only exception the front end lets escape."""

    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.sources) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


class UsageError(Exception):
    """A bad command line (exit code 2): a missing argument, a value out of range, a path that cannot be used."""


def error(span: Span, message: str, hint: str | None = None) -> FlashError:
    return FlashError([Diagnostic(span, message, hint)])


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(str(name), sorted({str(c) for c in candidates}), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
