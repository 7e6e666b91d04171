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
from flashc.build.repeat import Repeats
from flashc.build.scope import Scope
from flashc.build.sequential import Sequentials
from flashc.build.statements import Statements
from flashc.ir.graph import Graph, Value
from flashc.syntax import ast


class Builder(Statements, Expressions, Binding, Apply, Repeats, Sequentials, Moes, Nodes, Naming):
    """Evaluates one model: statements, expressions, arguments, applications, nodes and names."""

    def finish(self, model: ast.Model, scope: Scope, params: dict[str, Any], source: str) -> Graph:
        names = self.final_names()
        def rn(v: Value | None) -> Value | None:
            return None if v is None else Value(names.get(v.name, v.name), v.type)
        nodes = tuple(
            replace(n, inputs=tuple(rn(v) for v in n.inputs), outputs=tuple(rn(v) for v in n.outputs))
            for n in self.nodes
        )
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
