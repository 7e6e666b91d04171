"""The checker's report: per-layer output shapes and parameter counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flashc.diagnostics import Span
from flashc.ir.graph import Graph, Node
from flashc.ir.tree import Group, tree


@dataclass(frozen=True)
class Row:
    layer: str
    op: str
    shape: str
    params: int
    line: int = 0  # the source line the layer is applied on
    block: str = ""  # the innermost block application around it (`blocks.3`), "" at model level


def fresh_params(graph: Graph) -> dict[int, int]:
    """Parameters each node brings (by node index): a shared layer's weights count once, tied ones never."""
    out: dict[int, int] = {}
    counted: set[str] = set()
    for i, node in enumerate(graph.nodes):
        inside = [node] + [n for body in node.bodies for n in body.walk()]  # a scan's step counts on its row
        own = [p for n in inside for local, p in n.weights if n.layer and p == f"{n.layer}.{local}"]
        fresh = [p for p in own if p not in counted and not graph.weights[p].spec.buffer]
        counted.update(own)
        out[i] = sum(graph.weights[p].spec.size for p in fresh)
    return out


def summary(graph: Graph) -> list[Row]:
    """One row per op application, in execution order."""
    params = fresh_params(graph)
    return [
        Row(_layer(node), node.op.name, _shape(node), params[i], node.span.line, node.frames[-1].path if node.frames else "")
        for i, node in enumerate(graph.nodes)
    ]


def _layer(node: Node) -> str:
    return node.layer or node.outputs[0].name


def _shape(node: Node) -> str:
    return ", ".join(str(o.type) for o in node.outputs)


class _Table:
    """Rows of the check table: nodes, block headers with subtotals, folded repeats."""

    def __init__(self, graph: Graph, expand: bool) -> None:
        self.graph = graph
        self.expand = expand
        self.params = {id(n): p for n, p in zip(graph.nodes, fresh_params(graph).values())}
        self.rows: list[tuple[str, str, str, str, str]] = []

    def source(self, span: Span) -> str:
        if span.line <= 0:
            return ""
        if span.file != self.graph.span.file:
            return f"{Path(span.file).name}:{span.line}"
        return str(span.line)

    def subtotal(self, group: Group) -> int:
        return sum(self.params[id(n)] for n in group.nodes())

    def add(self, depth: int, layer: str, op: str, shape: str, params: int, source: str) -> None:
        self.rows.append(("  " * depth + layer, op, shape, f"{params:,}", source))

    def walk(self, group: Group, depth: int) -> None:
        for child in group.children:
            if isinstance(child, Node):
                self.add(depth, _layer(child), child.op.name, _shape(child), self.params[id(child)], self.source(child.span))
            else:
                self.frame(child, depth)

    def frame(self, group: Group, depth: int) -> None:
        frame = group.frame
        assert frame is not None
        last = group.last()
        shape = _shape(last) if last is not None else ""
        op = {"block": frame.name, "sequential": f"sequential({frame.count})"}.get(
            frame.kind, f"repeat({frame.count}, {frame.name})")
        self.add(depth, frame.path or frame.name, op, shape, self.subtotal(group), self.source(frame.span))
        instances = group.groups
        if frame.kind != "repeat" or self.expand or len(instances) < 2:
            self.walk(group, depth + 1)
            return
        self.frame(instances[0], depth + 1)
        rest = instances[1:]
        first, final = rest[0].frame, rest[-1].frame
        assert first is not None and final is not None
        shared = first.path == final.path
        label = first.path if len(rest) == 1 or shared else f"{first.path} .. {final.path}"
        op = f"{len(rest)} more {frame.name}" + (" (shared)" if shared and len(rest) > 1 else "")
        self.add(depth + 1, label, op, "(--expand shows them)", sum(self.subtotal(g) for g in rest), "")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


ITEMSIZE = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1,
            "bool": 1}


def totals(graph: Graph) -> dict[str, tuple[int, int]]:
    """(count, bytes) of trainable parameters, non-trainable parameters and buffers, as Keras splits them."""
    out = {"trainable": [0, 0], "non-trainable": [0, 0], "buffers": [0, 0]}
    for weight in graph.weights.values():
        spec = weight.spec
        kind = "buffers" if spec.buffer else "trainable" if spec.dtype in ITEMSIZE and spec.dtype.startswith(
            ("float", "bfloat")) else "non-trainable"
        out[kind][0] += spec.size
        out[kind][1] += spec.size * ITEMSIZE.get(spec.dtype, 4)
    return {k: (v[0], v[1]) for k, v in out.items()}


def render_table(graph: Graph, expand: bool = False) -> str:
    """The check report: one row per layer (repeats folded unless ``expand``), then the totals."""
    table = _Table(graph, expand)
    table.walk(tree(graph), 0)
    head = ("layer", "op", "output", "params", "source")
    cells = [head, *table.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = []
    for i, c in enumerate(cells):
        line = "  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]), c[2].ljust(widths[2]),
                          c[3].rjust(widths[3]), c[4].rjust(widths[4])])
        lines.append(line.rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    ins = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs)
    outs = ", ".join(f"{n}: {v.type}" for n, v in graph.outputs)
    split = totals(graph)
    width = max(len(f"{count:,}") for count, _ in split.values())
    lines += [
        "",
        f"model {graph.name}({', '.join(f'{k} = {v}' for k, v in graph.params.items())})",
        f"inputs:  {ins}",
        f"outputs: {outs}",
        f"total parameters: {graph.parameter_count:,}",
    ]
    notes = {"trainable": "", "non-trainable": "", "buffers": "; saved with the weights, never trained"}
    for kind, (count, size) in split.items():
        lines.append(f"  {kind + ':':<15}{count:>{width},}  ({_human_bytes(size)}{notes[kind]})")
    if graph.train is not None:
        t = graph.train
        lines.append(f"train: {t.optimizer.name}, batch {t.batch}, {t.epochs} epochs, loss {describe_loss(t.loss)}")
        lines += [f"  phase {ph.name}: {ph.optimizer.name} on {len(ph.parameters) or 'all'} weights, loss "
                  f"{describe_loss(ph.loss)}" for ph in t.phases]
    return "\n".join(lines)


def describe_loss(term: Any) -> str:
    if term.kind == "call" and not term.children:
        return f"{term.name}({', '.join(term.args)})"
    if term.kind in ("call", "fn"):  # arguments that are expressions (`ones_like(score)`, `arange(B)`)
        return f"{term.name}({', '.join([describe_loss(c) for c in term.children] + list(term.args if term.kind == 'fn' else []))})"
    if term.kind == "number":
        return f"{term.value:g}"
    if term.kind == "neg":
        return f"-{describe_loss(term.children[0])}"
    if term.kind == "output":  # a scalar output of the model, e.g. moe_aux()'s balance loss
        return term.name
    left, right = (describe_loss(c) for c in term.children)
    if term.name in "*/":  # a sum inside a product keeps its parentheses
        left, right = (f"({s})" if c.kind == "binop" and c.name in "+-" else s for c, s in zip(term.children, (left, right)))
    if term.name in "-/" and term.children[1].kind == "binop":
        right = f"({right})"
    return f"{left} {term.name} {right}"


def to_json(graph: Graph) -> dict[str, Any]:
    return {
        "model": graph.name,
        "params": {k: v for k, v in graph.params.items()},
        "inputs": [{"name": v.name, "type": str(v.type)} for v in graph.inputs],
        "outputs": [{"name": n, "type": str(v.type)} for n, v in graph.outputs],
        "layers": [r.__dict__ for r in summary(graph)],
        "weights": {p: list(w.spec.shape) for p, w in graph.weights.items()},
        "total_parameters": graph.parameter_count,
        "totals": {kind: {"count": count, "bytes": size} for kind, (count, size) in totals(graph).items()},
        "spec_sha256": graph.source_hash,
    }
