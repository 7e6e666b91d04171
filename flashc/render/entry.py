"""Render a checked graph to a file: `.svg` (one picture) or `.html` (blocks open on click)."""

from __future__ import annotations

import os
from pathlib import Path

from flashc.diagnostics import Span, UsageError, error
from flashc.ir.graph import Graph
from flashc.render.html import to_html
from flashc.render.layout import layout
from flashc.render.scene import build_scene, frames_to_depth
from flashc.render.svg import to_svg

FORMATS = (".svg", ".html")


def render(graph: Graph, depth: int = 0, fmt: str = ".svg", source: str = "") -> str:
    """The picture as text: blocks open down to ``depth`` levels of nesting (0: every block one box)."""
    opened = frames_to_depth(graph, depth)
    if fmt == ".html":
        return to_html(graph, opened, source)
    return to_svg(layout(build_scene(graph, opened)), graph.name)


def write_graph(graph: Graph, out: str | Path, depth: int = 0, source: str = "") -> Path:
    """Write ``out`` (the format follows its suffix), atomically."""
    out = Path(out)
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise UsageError(f"-o must end in .svg or .html, got {str(out)!r}")
    if depth < 0:
        raise UsageError(f"--depth must be >= 0, got {depth}")
    text = render(graph, depth, fmt, source)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise error(Span.unknown(str(out)), f"cannot write {out}: {exc.strerror or exc}") from None
    return out
