"""Grammar loading and parsing: text in, AST out, errors as diagnostics."""

from flashc.syntax.parser import parse

__all__ = ["parse"]
