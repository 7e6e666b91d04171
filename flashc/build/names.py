"""Naming: value names, layer paths and the names values finally carry in the graph.

Layer paths are state-dict prefixes (``blocks.0.attention``); a path is claimed by
an owner (a scope or an application) so that shared weights reuse it and anyone
else gets a suffix.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from flashc.build.scope import RESERVED, Scope
from flashc.build.state import BuilderState
from flashc.build.values import Layer
from flashc.diagnostics import Span
from flashc.ir.graph import Node, Value
from flashc.ir.types import TensorType

if TYPE_CHECKING:
    from flashc.ops.base import Op


def _suffix(candidate: str, path: str) -> int | None:
    """i where ``candidate`` is `path` (0) or `path_i`; None otherwise."""
    if candidate == path:
        return 0
    rest = candidate[len(path) + 1:]
    if candidate.startswith(path + "_") and rest.isdigit() and not rest.startswith("0"):
        return int(rest)
    return None


class Naming(BuilderState):
    def new_value(self, base: str, type_: TensorType) -> Value:
        flat = base.replace(".", "_")
        base = base if flat.isidentifier() and flat not in RESERVED else f"v_{base}"
        i = self.value_counters.get(base, 0)
        name = base if i == 0 else f"{base}_{i}"
        while name in self.value_names:
            i += 1
            name = f"{base}_{i}"
        self.value_counters[base] = i + 1
        self.value_names.add(name)
        return Value(name, type_)

    @staticmethod
    def binding_path(name: str, scope: Scope) -> str:
        """The n-th layer bound to `name` in a scope is `name`, `name_1`, ...: the same on every application."""
        key = "=" + name
        n = scope.counters.get(key, 0)
        scope.counters[key] = n + 1
        return scope.path(name if n == 0 else f"{name}_{n}")

    def claim_path(self, path: str, owner: object) -> str:
        """Reserve a layer path for ``owner``; a clash with another owner gets a suffix.

        The first of `path`, `path_1`, ... that is free or already this owner's. Where to start
        looking for a free one is remembered per path, and an owner's own claims are kept
        beside it: thousands of owners clashing on one path cost linear time, not quadratic.
        """
        for i in itertools.count(self.claim_next.get(path, 0)):
            candidate = path if i == 0 else f"{path}_{i}"
            if self.layer_owner.get(candidate, owner) == owner:
                break
        self.claim_next[path] = i
        earlier = [j for j in map(lambda c: _suffix(c, path), self.owned.get(owner, ())) if j is not None and j < i]
        if earlier:
            i = min(earlier)
            candidate = path if i == 0 else f"{path}_{i}"
        self.layer_owner.setdefault(candidate, owner)
        self.owned.setdefault(owner, set()).add(candidate)
        return candidate

    def layer_path(self, cls: type[Op], layer: Layer | None, scope: Scope | None, span: Span) -> str:
        if layer is not None and layer.path is not None:
            return layer.path
        if scope is None:
            raise self.fail(span, f"`{cls.name}` needs a layer name here")
        if self.name_hint is not None:
            hint, self.name_hint = self.name_hint, None
            return self.claim_path(hint, scope.owner)
        return self.claim_path(scope.fresh(cls.name), scope.owner)

    def final_names(self) -> dict[str, str]:
        """Give values the names the user chose, suffixed where needed to stay unique.

        Uniqueness is checked on the identifier form (`blocks.0.x` -> `blocks_0_x`), so a
        backend that needs variables can use it as is.
        """
        taken = {v.name for v in self.inputs}
        out: dict[str, str] = {}
        for value in produced(self.nodes):
            wanted = self.renames.get(value.name, value.name)
            candidate, i = wanted, 1
            while candidate.replace(".", "_") in taken or candidate in RESERVED:
                candidate, i = f"{wanted}_{i}", i + 1
            taken.add(candidate.replace(".", "_"))
            out[value.name] = candidate
        return out


def produced(nodes: Iterable[Node]) -> Iterator[Value]:
    """The values nodes make, in order; a node's bodies (a scan's step: its inputs, then its nodes) first."""
    for node in nodes:
        for body in node.bodies:
            yield from body.inputs
            yield from produced(body.nodes)
        yield from node.outputs
