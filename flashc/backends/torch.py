"""IR -> readable PyTorch source, and an nn.Module made from that same source.

`flashc compile --target torch` writes the source; `to_torch()` runs it (as
torch.fx does with its generated code) so both are the same module by
construction. The source is assembled only from identifiers the builder
validated and from `repr()` of numbers and strings, so a spec cannot inject
code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flashc.ir.graph import Graph, Node
from flashc.ops.base import Lowering
from flashc.version import __version__
from flashc.weights import check_weights, init_weights

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def attr_path(path: str) -> str:
    """`decoder.0.attention` -> `self.decoder[0].attention`."""
    out = "self"
    for seg in path.split("."):
        if seg.isdigit():
            out += f"[{seg}]"
        else:
            assert IDENT.match(seg), seg
            out += f".{seg}"
    return out


def _module_tree(graph: Graph) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for node in graph.walk():
        if node.layer is None:
            continue
        cursor = tree
        for seg in node.layer.split("."):
            cursor = cursor.setdefault(seg, {})
    return tree


def _init_lines(graph: Graph) -> list[str]:
    modules = {}
    for node in graph.walk():
        if node.layer is not None and node.layer not in modules:
            modules[node.layer] = node.op.torch_module(*(v.type if v is not None else None for v in node.inputs))
    lines: list[str] = []

    def walk(tree: dict[str, Any], prefix: str, in_list: bool) -> None:
        for seg, children in tree.items():
            path = f"{prefix}.{seg}" if prefix else seg
            listed = bool(children) and all(k.isdigit() for k in children)
            if modules.get(path) is not None:
                lines.append(f"{attr_path(path)} = {modules[path]}")
            elif listed:
                size = max(int(k) for k in children) + 1  # steps without weights leave gaps
                lines.append(f"{attr_path(path)} = nn.ModuleList([nn.Module() for _ in range({size})])")
            elif not in_list:
                lines.append(f"{attr_path(path)} = nn.Module()")
            walk(children, path, listed)

    walk(_module_tree(graph), "", False)
    for node in graph.walk():
        for local, target in node.weights:
            if node.layer is not None and target != f"{node.layer}.{local}":
                line = f"{attr_path(node.layer)}.{local} = {attr_path(target)}  # tied weight"
                if line not in lines:
                    lines.append(line)
    return lines


@dataclass
class Body:
    """A sub-graph rendered for the op that runs it (a scan's step): its variables and its lines."""

    inputs: list[str]
    outputs: list[str]
    lines: list[str]
    names: set[str]  # every variable the lines use


class Methods:
    """Helper methods of the generated module (a scan's loop), each under a unique name."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)
        self.sources: list[str] = []

    def define(self, base: str, params: list[str], doc: str, lines: list[str]) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        self.sources += ["", f"    def {name}(self, {', '.join(params)}):", f'        """{doc}."""',
                         *(f"        {line}" for line in lines)]
        return f"self.{name}"


def _lines(nodes: tuple[Node, ...], methods: Methods) -> list[str]:
    """One line per node: `targets = expression  # types`."""
    lines: list[str] = []
    for node in nodes:
        c = Lowering(
            inputs=[v.ident if v is not None else None for v in node.inputs],
            types=[v.type if v is not None else None for v in node.inputs],
            out_types=[o.type for o in node.outputs],
            weights=node.weight_map,
            module=attr_path(node.layer) if node.layer else None,
            bodies=[_body(g, methods) for g in node.bodies],
            method=methods.define,
        )
        targets = ", ".join(o.ident for o in node.outputs)
        shapes = ", ".join(str(o.type) for o in node.outputs)
        lines.append(f"{targets} = {node.op.to_torch(c)}  # {shapes}")
    return lines


def _body(g: Graph, methods: Methods) -> Body:
    names = {v.ident for v in g.inputs} | {v.ident for n in g.walk() for v in (*n.inputs, *n.outputs) if v is not None}
    return Body([v.ident for v in g.inputs], [v.ident for _, v in g.outputs], _lines(g.nodes, methods), names)


def torch_source(graph: Graph) -> str:
    """A standalone Python module (imports only torch) defining the model."""
    assert IDENT.match(graph.name)
    preludes: list[str] = []
    for node in graph.walk():
        preludes += [p for p in node.op.torch_prelude if p not in preludes]
    args = ", ".join(v.ident for v in graph.inputs)  # a KV cache's `past_key_values.0.key` is past_key_values_0_key
    methods = Methods({"forward"} | {node.layer.split(".")[0] for node in graph.walk() if node.layer})
    body = _lines(graph.nodes, methods)
    outs = [v.ident for _, v in graph.outputs]
    body.append(f"return {outs[0]}" if len(outs) == 1 else f"return {', '.join(outs)}")
    init = _init_lines(graph) or ["pass"]
    header = (
        f'"""{graph.name}, generated by flashc {__version__} (spec sha256 {graph.source_hash[:16]}).\n\n'
        f"Edit the .flash spec, not this file. Parameters: {graph.parameter_count:,}.\n"
        '"""\n'
    )
    parts = [
        header,
        "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n",
        *preludes,
        f"\nclass {graph.name}(nn.Module):",
        f'    """{graph.name}: inputs {", ".join(f"{v.name}: {v.type}" for v in graph.inputs)}."""\n',
        f"    input_names = {tuple(v.name for v in graph.inputs)!r}",
        f"    output_names = {tuple(n for n, _ in graph.outputs)!r}\n",
        "    def __init__(self):",
        "        super().__init__()",
        *(f"        {line}" for line in init),
        "",
        f"    def forward(self, {args}):",
        *(f"        {line}" for line in body),
        *methods.sources,
        "",
    ]
    return "\n".join(parts)


def to_torch(graph: Graph, weights: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """An nn.Module for ``graph`` with the given weights, or the seeded initialisation."""
    import torch

    source = torch_source(graph)
    namespace: dict[str, Any] = {"__name__": f"flashc_generated_{graph.name}"}
    exec(compile(source, f"<flashc {graph.name}>", "exec"), namespace)  # noqa: S102  (our own generated code)
    module = namespace[graph.name]()
    arrays = check_weights(graph, weights) if weights is not None else init_weights(graph, seed)
    state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    for node in graph.walk():
        for local, target in node.weights:
            if node.layer is not None and target != f"{node.layer}.{local}":
                state[f"{node.layer}.{local}"] = state[target]
    module.load_state_dict(state, strict=True)
    module.flashc_source = source
    return module
