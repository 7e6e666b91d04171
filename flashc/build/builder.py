"""The Builder: every concern's mixin composed into one evaluator, and the graph it finishes."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from flashc.build.apply import Apply
from flashc.build.binding import Binding
from flashc.build.expressions import Expressions
from flashc.build.moe import Moes
from flashc.build.names import Naming
from flashc.build.nodes import Nodes
from flashc.build.operators import Operators
from flashc.build.repeat import Repeats
from flashc.build.scan import Scans
from flashc.build.scope import Scope
from flashc.build.sequential import Sequentials
from flashc.build.statements import Statements
from flashc.ir.graph import Graph, Node, Value
from flashc.syntax import ast


class Builder(Statements, Expressions, Operators, Binding, Apply, Repeats, Sequentials, Moes, Scans, Nodes, Naming):
    """Evaluates one model: statements, expressions, arguments, applications, nodes and names."""

    def finish(self, model: ast.Model, scope: Scope, params: dict[str, Any], source: str) -> Graph:
        names = self.final_names()
        def rn(v: Value | None) -> Value | None:
            return None if v is None else Value(names.get(v.name, v.name), v.type)

        def body(g: Graph) -> Graph:
            outputs = tuple((rn(v).name, rn(v)) for _, v in g.outputs)
            return replace(g, inputs=tuple(rn(v) for v in g.inputs), nodes=tuple(node(n) for n in g.nodes),
                           outputs=outputs)

        def node(n: Node) -> Node:
            return replace(n, inputs=tuple(rn(v) for v in n.inputs), outputs=tuple(rn(v) for v in n.outputs),
                           bodies=tuple(body(g) for g in n.bodies))

        nodes = tuple(node(n) for n in self.nodes)
        return Graph(
            name=model.name,
            params=params,
            inputs=tuple(rn(v) for v in self.inputs),
            nodes=nodes,
            outputs=tuple((n, rn(v)) for n, v in self.outputs),
            weights=dict(self.weights),
            span=model.span,
            source_hash=hashlib.sha256(source.encode()).hexdigest(),
            layers=dict(self.layer_ops),
        )
