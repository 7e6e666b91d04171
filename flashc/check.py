"""The checker's report: per-layer output shapes and parameter counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flashc.ir.graph import Graph


@dataclass(frozen=True)
class Row:
    layer: str
    op: str
    shape: str
    params: int


def summary(graph: Graph) -> list[Row]:
    """One row per op application; a shared layer's weights count once, tied ones never."""
    rows: list[Row] = []
    counted: set[str] = set()
    for node in graph.nodes:
        own = [p for local, p in node.weights if node.layer and p == f"{node.layer}.{local}"]
        fresh = [p for p in own if p not in counted and not graph.weights[p].spec.buffer]
        counted.update(own)
        shape = ", ".join(str(o.type) for o in node.outputs)
        rows.append(Row(node.layer or node.outputs[0].name, node.op.name, shape, sum(graph.weights[p].spec.size for p in fresh)))
    return rows


def render_table(graph: Graph) -> str:
    rows = summary(graph)
    head = ("layer", "op", "output", "params")
    cells = [head] + [(r.layer, r.op, r.shape, f"{r.params:,}") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]), c[2].ljust(widths[2]), c[3].rjust(widths[3])]))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    ins = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs)
    outs = ", ".join(f"{n}: {v.type}" for n, v in graph.outputs)
    lines += [
        "",
        f"model {graph.name}({', '.join(f'{k} = {v}' for k, v in graph.params.items())})",
        f"inputs:  {ins}",
        f"outputs: {outs}",
        f"total parameters: {graph.parameter_count:,}",
    ]
    if graph.train is not None:
        t = graph.train
        lines.append(f"train: {t.optimizer.name}, batch {t.batch}, {t.epochs} epochs, loss {describe_loss(t.loss)}")
    return "\n".join(lines)


def describe_loss(term: Any) -> str:
    if term.kind == "call":
        return f"{term.name}({', '.join(term.args)})"
    if term.kind == "number":
        return f"{term.value:g}"
    if term.kind == "neg":
        return f"-{describe_loss(term.children[0])}"
    return f"{describe_loss(term.children[0])} {term.name} {describe_loss(term.children[1])}"


def to_json(graph: Graph) -> dict[str, Any]:
    return {
        "model": graph.name,
        "params": {k: v for k, v in graph.params.items()},
        "inputs": [{"name": v.name, "type": str(v.type)} for v in graph.inputs],
        "outputs": [{"name": n, "type": str(v.type)} for n, v in graph.outputs],
        "layers": [r.__dict__ for r in summary(graph)],
        "weights": {p: list(w.spec.shape) for p, w in graph.weights.items()},
        "total_parameters": graph.parameter_count,
        "spec_sha256": graph.source_hash,
    }
