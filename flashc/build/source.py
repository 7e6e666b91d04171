"""Reading spec files and resolving `import`: the only place the builder touches the file system."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flashc.diagnostics import FlashError, Span, did_you_mean, error
from flashc.syntax import ast
from flashc.syntax.parser import parse


def read_source(path: str | Path) -> str:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(Span.unknown(str(path)), f"no such file: {path}") from None
    except IsADirectoryError:
        raise error(Span.unknown(str(path)), f"{path} is a directory, not a .flash file") from None
    except OSError as exc:
        raise error(Span.unknown(str(path)), f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(Span(str(path), line, col, line, col + 1), "the file is not valid UTF-8 text") from None


def collect_blocks(module: ast.Module, base: Path, sources: dict[str, str], seen: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Blocks made visible by `import`, as (name, (BlockDef, library of its file)) pairs.

    A block's library maps every block name visible in the file that defines it,
    so an imported block can use its neighbours and its own imports.
    """
    for imp in module.imports:
        target = (base / imp.path).resolve()
        if str(target) in seen:
            raise error(imp.span, f"import cycle: {imp.path} imports itself")
        try:
            text = read_source(target)
        except FlashError as exc:
            raise error(imp.span, f"cannot import {imp.path}: {exc.diagnostics[0].message}") from None
        sources[str(target)] = text
        other = parse(text, str(target))
        available: dict[str, Any] = dict(collect_blocks(other, target.parent, sources, (*seen, str(target))))
        for m in other.models:
            available.update({s.name: (s, available) for s in m.body if isinstance(s, ast.BlockDef)})
        if imp.names is None:
            yield from available.items()
            continue
        for name in imp.names:
            if name.id not in available:
                raise error(name.span, f"{imp.path} has no block `{name.id}`", did_you_mean(name.id, available))
            yield name.id, available[name.id]
