"""`sequential(a, b, ...)`: layers and blocks chained, weights under `name.0`, `name.1`, ..."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flashc.build.scope import Scope
from flashc.build.state import BuilderState
from flashc.build.values import Block, Layer, Repeat, Sequential, Tensor, describe
from flashc.diagnostics import Span


class Sequentials(BuilderState):
    def make_sequential(self, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        tensors = [a for a in args if isinstance(a[0], Tensor)]
        items = [a for a in args if not isinstance(a[0], Tensor)]
        if kwargs:
            key, (_, aspan) = next(iter(kwargs.items()))
            raise self.fail(aspan, f"sequential has no argument `{key}`", "it takes the layers and blocks to chain")
        for value, aspan in items:
            if not isinstance(value, (Layer, Block, Repeat, Sequential)):
                raise self.fail(aspan, f"sequential chains layers and blocks, got {describe(value)}")
        if not items:
            raise self.fail(span, "sequential needs at least one layer or block")
        seq = Sequential(tuple(v for v, _ in items), span)
        return self.apply_sequential(seq, tensors, {}, span, scope) if tensors else seq

    def apply_sequential(self, seq: Sequential, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        if kwargs or len(args) != 1 or not isinstance(args[0][0], Tensor):
            raise self.fail(span, "a sequential is applied to one tensor")
        if seq.path is not None:
            container, owner = seq.path, scope.owner
        else:
            container = scope.fresh("sequential")
            owner = (scope.owner, container)
            container = self.claim_path(container, owner)
        x = args[0][0]
        with self.framed("sequential", "sequential", container, span, len(seq.items)):
            for i, item in enumerate(seq.items):
                path = f"{container}.{i}"
                if isinstance(item, Block):
                    free = [p.name for p in item.node.params if p.name not in item.bound]
                    if not free:
                        raise self.fail(span, f"block {item.node.name} takes no free argument to chain")
                    bound = {**item.bound, free[0]: x}
                    if item.path is not None:
                        path, item_owner = item.path, item.owner
                    else:
                        item_owner = (owner, i)
                        self.claim_path(path, item_owner)
                    x = self.run_block(item, bound, path, item_owner, span)
                else:
                    if item.path is None:
                        item = replace(item, path=self.claim_path(path, owner))
                    x = self.apply(item, [(x, span)], {}, span, scope)
                if not isinstance(x, Tensor):
                    raise self.fail(span, f"each step of a sequential must give one tensor, got {describe(x)}")
        return x
