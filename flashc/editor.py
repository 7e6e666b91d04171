"""What an editor asks about a spec: diagnostics, hover, definitions, completions, symbols.

Plain functions over a document's text and path, so the language server
(:mod:`flashc.lsp`) only translates to and from the protocol and the answers
are tested without one. Positions here are 1-based lines and columns, as in
every flashc :class:`~flashc.diagnostics.Span`; the server converts.

One :class:`Analysis` per version of a document: the AST when it parses, the
graph when it builds, the diagnostics otherwise. Hover and definitions fall back
to the last analysis that built, so they keep working while the text is broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from flashc.build import build, collect_blocks
from flashc.check import fresh_params
from flashc.diagnostics import Diagnostic, FlashError, Span
from flashc.ir.graph import Graph, Node
from flashc.ops.base import REGISTRY, Op
from flashc.syntax import ast, parse

KEYWORDS = ("model", "block", "input", "output", "return", "train", "import", "from", "target", "loss",
            "regularize", "on", "repeat", "sequential")
SETTINGS = ("optimizer", "schedule", "batch", "epochs", "early_stop", "clip_grad", "adversarial")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Analysis:
    """One version of a document, as far as it could be read."""

    text: str
    path: str
    module: ast.Module | None = None
    graph: Graph | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)


def analyze(text: str, path: str) -> Analysis:
    """Parse and build ``text`` (imports resolve beside ``path``); every problem becomes a diagnostic."""
    result = Analysis(text, path)
    try:
        result.module = parse(text, path)
    except FlashError as exc:
        result.diagnostics = list(exc.diagnostics)
        return result
    if not result.module.models:
        return result
    try:
        result.graph = build(text, path, {}, base=Path(path).parent)
    except FlashError as exc:
        result.diagnostics = list(exc.diagnostics)
    return result


def located(diagnostic: Diagnostic, path: str) -> tuple[Span, str]:
    """Where in *this* file to show a diagnostic, and its text (`file:line:col: error: ...` when it is elsewhere)."""
    span, text = diagnostic.span, diagnostic.message
    if diagnostic.hint:
        text += f"\nhint: {diagnostic.hint}"
    if span.file != path or span.line < 1:
        return Span(path, 1, 1, 1, 1), f"{span}: {diagnostic.severity}: {text}"
    return span, text


# --- the word under the cursor --------------------------------------------------------------------

def word_at(text: str, line: int, col: int) -> tuple[str, Span] | None:
    """The identifier (or quoted string) at a 1-based position, with its span."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    row = lines[line - 1]
    for m in re.finditer(r'"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*', row):
        if m.start() + 1 <= col <= m.end() + 1 and "#" not in row[:m.start()]:  # not inside a comment
            return m.group(0), Span("", line, m.start() + 1, line, m.end() + 1)
    return None


def _contains(span: Span, line: int, col: int) -> bool:
    return (span.line, span.col) <= (line, col) < (span.end_line, span.end_col)


def _size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_col - span.col if span.end_line == span.line else 10**6)


# --- hover ------------------------------------------------------------------------------------------

def hover(analysis: Analysis, line: int, col: int) -> str | None:
    """Markdown for the thing under the cursor: a value's type and shape, a layer's parameters, an op."""
    found = word_at(analysis.text, line, col)
    if found is None:
        return None
    word, _ = found
    graph = analysis.graph
    if graph is not None:
        text = (_hover_target(analysis, graph, word, line) or _hover_node(graph, analysis.path, word, line, col)
                or _hover_layer(graph, word))
        if text:
            return text
        for value in graph.inputs:
            if value.name == word:
                return f"```\ninput {value.name}: {value.type}\n```"
        if word in graph.params:
            return f"```\n{word} = {graph.params[word]!r}\n```\nmodel parameter"
    cls = REGISTRY.get(word)
    if cls is not None:
        return f"```\n{signature(cls)}\n```\n{(cls.__doc__ or '').strip()}"
    block = _block_def(analysis, word)
    if block is not None:
        return _hover_block(analysis, block)
    return None


def _nodes_at(graph: Graph, path: str, line: int, col: int) -> list[Node]:
    return [n for n in graph.nodes if n.span.file == path and _contains(n.span, line, col)]


def _hover_node(graph: Graph, path: str, word: str, line: int, col: int) -> str | None:
    here = _nodes_at(graph, path, line, col)
    if not here:
        return None
    named = [n for n in here if n.layer and n.layer.rsplit(".", 1)[-1] == word]
    same_op = [n for n in here if n.op.name == word]
    assigned = [n for n in here if any(o.name.rsplit(".", 1)[-1] == word for o in n.outputs)]
    if named or same_op:
        pick = named or same_op
        smallest = min(_size(n.span) for n in pick)
        pick = [n for n in pick if _size(n.span) == smallest]
    elif assigned:
        pick = assigned
    else:  # the statement's result: the last node it built, applied where the word stands
        smallest = min(_size(n.span) for n in here)
        pick = [n for n in here if _size(n.span) == smallest]
    params = fresh_params(graph)
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    node = pick[-1] if assigned and not (named or same_op) else pick[0]
    types = ", ".join(str(o.type) for o in node.outputs)
    layer = node.layer or node.outputs[0].name
    count = (params[index[id(node)]] or graph.layer_parameter_count(node.layer)) if node.layer else 0  # shared: its own
    lines = [f"```\n{layer}: {node.op.name} -> {types}\n```"]
    lines.append(f"{count:,} parameters" if count else "no parameters")
    lines.append(f"`{signature(type(node.op))}`")
    applications = [n for n in pick if n.span == node.span]
    if len(applications) > 1:
        lines.append(f"applied {len(applications)} times here (one per block application)")
    return "\n\n".join(lines)


def _statements(body: tuple) -> list:
    out = []
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, ast.BlockDef):
            out.extend(_statements(stmt.body))
    return out


def _hover_target(analysis: Analysis, graph: Graph, word: str, line: int) -> str | None:
    """`h = ...` or `output logits = ...` with the cursor on the name: the type of what the statement made."""
    module = analysis.module
    if module is None:
        return None
    for model in module.models:
        for stmt in _statements(model.body):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else (stmt.name,) if isinstance(stmt, ast.Output) else ()
            if word not in targets or stmt.span.line != line:
                continue
            made = [n for n in graph.nodes if n.span.file == analysis.path
                    and (stmt.span.line, stmt.span.col) <= (n.span.line, n.span.col)
                    and (n.span.end_line, n.span.end_col) <= (stmt.span.end_line, stmt.span.end_col)]
            if not made:
                return None
            last = made[-1]
            k = targets.index(word)
            value = last.outputs[k] if len(targets) > 1 and k < len(last.outputs) else last.outputs[0]
            return f"```\n{word}: {value.type}\n```\n\nmade by `{last.op.name}` (line {stmt.span.line})"
    return None


def _hover_layer(graph: Graph, word: str) -> str | None:
    """A layer or a repeat/sequential named where it is declared (`wte = embedding(...)`, `blocks = repeat(...)`)."""
    for node in graph.nodes:
        if node.layer == word:
            types = ", ".join(str(o.type) for o in node.outputs)
            count = graph.layer_parameter_count(word)
            return f"```\n{word}: {node.op.name} -> {types}\n```\n\n{count:,} parameters"
    counts = fresh_params(graph)
    for node in graph.nodes:
        for frame in node.frames:
            if frame.path == word and frame.kind != "block":
                total = sum(p for j, p in counts.items() if any(f.id == frame.id for f in graph.nodes[j].frames))
                last = [n for n in graph.nodes if any(f.id == frame.id for f in n.frames)][-1]
                kind = f"repeat({frame.count}, {frame.name})" if frame.kind == "repeat" else f"sequential({frame.count})"
                return f"```\n{word}: {kind} -> {last.outputs[0].type}\n```\n\n{total:,} parameters"
    return None


def _hover_block(analysis: Analysis, block: ast.BlockDef) -> str:
    params = ", ".join(p.name for p in block.params)
    text = f"```\nblock {block.name}({params})\n```"
    graph = analysis.graph
    if graph is not None:
        frames = {f.id: f for n in graph.nodes for f in n.frames if f.kind == "block" and f.name == block.name}
        if frames:
            counts = fresh_params(graph)
            total = sum(p for i, p in counts.items()
                        if any(f.id in frames for f in graph.nodes[i].frames))
            text += f"\n\napplied {len(frames)} time(s), {total:,} parameters in all"
    return text


def signature(cls: type[Op]) -> str:
    """`linear(x, features, bias = true)`: inputs, then settings with their defaults."""
    parts = [f"{i.name}..." if i.variadic else f"{i.name}?" if i.optional else i.name for i in cls.inputs]
    for name, p in cls.params.items():
        parts.append(name if p.required else f"{name} = {_literal(p.default)}")
    return f"{cls.name}({', '.join(parts)})"


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


# --- definitions ------------------------------------------------------------------------------------

def _blocks_in(body: tuple) -> list[ast.BlockDef]:
    out = []
    for stmt in body:
        if isinstance(stmt, ast.BlockDef):
            out.append(stmt)
            out.extend(_blocks_in(stmt.body))
    return out


def _block_def(analysis: Analysis, name: str) -> ast.BlockDef | None:
    module = analysis.module
    if module is None:
        return None
    for model in module.models:
        for block in _blocks_in(model.body):
            if block.name == name:
                return block
    try:
        imported = dict(collect_blocks(module, Path(analysis.path).parent, {}))
    except FlashError:
        return None
    found = imported.get(name)
    return found[0] if found is not None else None


def _enclosing(body: tuple, line: int) -> list[ast.BlockDef]:
    """The blocks (innermost last) whose text contains ``line``."""
    for stmt in body:
        if isinstance(stmt, ast.BlockDef) and stmt.span.line <= line <= stmt.span.end_line:
            return [stmt, *_enclosing(stmt.body, line)]
    return []


def definition(analysis: Analysis, line: int, col: int) -> Span | None:
    """Where the name under the cursor is defined: a block, a layer or value, an input, a parameter, a file."""
    found = word_at(analysis.text, line, col)
    module = analysis.module
    if found is None or module is None:
        return None
    word, _ = found
    if word.startswith('"'):
        for imp in module.imports:
            if imp.span.line == line and imp.path == word[1:-1]:
                target = (Path(analysis.path).parent / imp.path).resolve()
                return Span(str(target), 1, 1, 1, 1) if target.is_file() else None
        return None
    block = _block_def(analysis, word)
    if block is not None:
        name_col = _name_column(block.span, "block", analysis, block.span.file)
        return Span(block.span.file, block.span.line, name_col, block.span.line, name_col + len(word))
    model = next((m for m in module.models if m.span.line <= line <= m.span.end_line), None)
    if model is None:
        return None
    scopes = [model, *_enclosing(model.body, line)]
    for scope in reversed(scopes):
        span = _defined_in(scope, word, line, analysis.text)
        if span is not None:
            return span
    return None


def _name_column(span: Span, keyword: str, analysis: Analysis, file: str) -> int:
    text = analysis.text if file == analysis.path else _read(file)
    row = text.split("\n")[span.line - 1] if text else ""
    m = re.search(rf"\b{keyword}\s+([A-Za-z_]\w*)", row)
    return m.start(1) + 1 if m else span.col


def _read(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except OSError:
        return ""


def _defined_in(scope: ast.Model | ast.BlockDef, word: str, line: int, text: str) -> Span | None:
    """The last definition of ``word`` in ``scope`` before ``line`` (a parameter when there is none)."""
    rows = text.split("\n")
    best: Span | None = None
    for stmt in scope.body:
        names: tuple[str, ...] = ()
        if isinstance(stmt, ast.Assign):
            names = stmt.targets
        elif isinstance(stmt, (ast.InputDecl, ast.Output)):
            names = (stmt.name,)
        if word in names and (stmt.span.line < line or best is None):
            m = re.search(rf"\b{re.escape(word)}\b", rows[stmt.span.line - 1])
            col = m.start() + 1 if m else stmt.span.col
            best = Span(stmt.span.file, stmt.span.line, col, stmt.span.line, col + len(word))
    if best is not None:
        return best
    for p in scope.params:
        if p.name == word:
            return Span(p.span.file, p.span.line, p.span.col, p.span.line, p.span.col + len(word))
    return None


# --- completion -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Completion:
    label: str
    kind: str  # "op" | "argument" | "block" | "keyword" | "name"
    detail: str = ""
    doc: str = ""
    insert: str = ""


def _open_call(text: str, line: int, col: int) -> str | None:
    """The op whose parentheses the cursor is inside, if any."""
    rows = text.split("\n")
    before = "\n".join(rows[: line - 1] + [rows[line - 1][: col - 1]]) if line <= len(rows) else text
    depth = 0
    for i in range(len(before) - 1, -1, -1):
        ch = before[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            if depth == 0:
                m = re.search(r"([A-Za-z_]\w*)\s*$", before[:i])
                return m.group(1) if m else None
            depth -= 1
        elif ch in "{}":
            return None
    return None


def completions(analysis: Analysis, line: int, col: int) -> list[Completion]:
    """Inside `op(...)`: its arguments with their defaults; elsewhere ops, blocks, names and keywords."""
    out: list[Completion] = []
    call = _open_call(analysis.text, line, col)
    cls = REGISTRY.get(call) if call else None
    if cls is not None:
        for name, p in cls.params.items():
            default = "required" if p.required else f"default {_literal(p.default)}"
            out.append(Completion(name, "argument", f"{name}: {default}", p.doc, f"{name} = "))
    for name in sorted(REGISTRY):
        op = REGISTRY[name]
        out.append(Completion(name, "op", signature(op), (op.__doc__ or "").strip(), name))
    module = analysis.module
    if module is not None:
        for model in module.models:
            for block in _blocks_in(model.body):
                out.append(Completion(block.name, "block", f"block {block.name}({', '.join(p.name for p in block.params)})"))
            for stmt in model.body:
                if isinstance(stmt, ast.Assign):
                    out.extend(Completion(t, "name", f"defined on line {stmt.span.line}") for t in stmt.targets)
            out.extend(Completion(p.name, "name", "model parameter") for p in model.params)
    out.extend(Completion(k, "keyword") for k in (*KEYWORDS, *SETTINGS))
    seen: set[str] = set()
    unique = []
    for c in out:
        if c.label not in seen:
            seen.add(c.label)
            unique.append(c)
    return unique


# --- document symbols -------------------------------------------------------------------------------

@dataclass
class Symbol:
    name: str
    kind: str  # "model" | "block" | "layer" | "input" | "output" | "train"
    span: Span
    detail: str = ""
    children: list[Symbol] = field(default_factory=list)


def symbols(analysis: Analysis) -> list[Symbol]:
    """The outline: models with their inputs, blocks and layers; train sections."""
    module = analysis.module
    if module is None:
        return []
    out = []
    for model in module.models:
        out.append(Symbol(model.name, "model", model.span, "model", _body_symbols(model.body)))
    for train in module.trains:
        out.append(Symbol(f"train {train.model}", "train", train.span, "train"))
    return out


def _body_symbols(body: tuple) -> list[Symbol]:
    out = []
    for stmt in body:
        if isinstance(stmt, ast.BlockDef):
            out.append(Symbol(stmt.name, "block", stmt.span, "block", _body_symbols(stmt.body)))
        elif isinstance(stmt, ast.InputDecl):
            out.append(Symbol(stmt.name, "input", stmt.span, f"input {stmt.type.dtype}"))
        elif isinstance(stmt, ast.Output):
            out.append(Symbol(stmt.name, "output", stmt.span, "output"))
        elif isinstance(stmt, ast.Assign):
            out.extend(Symbol(t, "layer", stmt.span, "value") for t in stmt.targets)
    return out
