"""`repeat(n, Block)`: n applications of a block, independent weights unless `shared`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flashc.build import limits
from flashc.build.scope import Scope
from flashc.build.state import BuilderState
from flashc.build.values import Block, Layer, Repeat, Tensor, describe
from flashc.diagnostics import Span
from flashc.ops.base import snake
from flashc.syntax import ast


class Repeats(BuilderState):
    def make_repeat(self, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        tensors = [a for a in args if isinstance(a[0], Tensor)]
        rest = [a for a in args if not isinstance(a[0], Tensor)]
        if len(rest) != 2:
            raise self.fail(span, "repeat takes a count and a block: `repeat(n, Block)`")
        (count, cspan), (block, bspan) = rest
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise self.fail(cspan, f"repeat count must be a whole number >= 1, got {describe(count)}")
        if count > limits.MAX_WORK:
            raise self.fail(cspan, f"repeat count {count:,} is above the limit of {limits.MAX_WORK:,} applications",
                            "check the count and the parameter it comes from")
        if not isinstance(block, (Block, Layer)):
            raise self.fail(bspan, f"repeat needs a block or a layer, got {describe(block)}")
        shared = False
        for key, (value, aspan) in kwargs.items():
            if key != "shared" or not isinstance(value, bool):
                raise self.fail(aspan, f"repeat has no argument `{key}`" if key != "shared" else "shared must be true or false")
            shared = value
        if isinstance(block, Layer):
            block = self.layer_as_block(block, span)
        free = [p for p in block.node.params if p.name not in block.bound]
        if not free:
            raise self.fail(bspan, f"repeat needs a block that takes a tensor; {block.node.name} takes no free argument")
        rep = Repeat(count, block, shared, span)
        if not tensors:
            return rep
        return self.apply_repeat(rep, tensors, {}, span, scope)

    def project_work(self, rep: Repeat, each: int, span: Span) -> None:
        """After the first copy: refuse at once when the copies to come would pass the work limit
        (`repeat(1000, B)` of a block that holds `repeat(1000, C)` stops here, not after 250,000 steps)."""
        total = self.work + each * (rep.count - 1)
        if total > limits.MAX_WORK:
            raise self.fail(span, f"repeat({rep.count:,}, {rep.block.node.name}) would need about {total:,} op and "
                                  f"block applications, above the limit of {limits.MAX_WORK:,}",
                            "check the repeat counts and the sizes they come from")

    def layer_as_block(self, layer: Layer, span: Span) -> Block:
        """`repeat(3, linear(8))`: wrap an op in a one-line block."""
        body = ast.Pipe(span, ast.Name(span, "x"), ast.Name(span, "_layer"))
        node = ast.BlockDef(span, layer.op.name, (ast.ParamDecl(span, "x", None),), (ast.Return(span, (body,)),))
        scope = Scope({"_layer": replace(layer, path=None, weights=None)}, None, "", object())
        return Block(node, scope)

    def apply_repeat(self, rep: Repeat, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        if kwargs or len(args) != 1 or not isinstance(args[0][0], Tensor):
            raise self.fail(span, "a repeat is applied to one tensor")
        if rep.path is not None:
            container, owner = rep.path, scope.owner
        else:
            container = scope.fresh(snake(rep.block.node.name))
            owner = (scope.owner, container)
            container = self.claim_path(container, owner)
        x = args[0][0]
        first = next(p.name for p in rep.block.node.params if p.name not in rep.block.bound)
        with self.framed("repeat", rep.block.node.name, container, span, rep.count):
            for i in range(rep.count):
                prefix = container if rep.shared else f"{container}.{i}"
                before = self.work
                x = self.run_block(rep.block, {**rep.block.bound, first: x}, prefix, owner if rep.shared else (owner, i), span)
                if i == 0:
                    self.project_work(rep, self.work - before, span)
                if not isinstance(x, Tensor):
                    raise self.fail(span, f"repeat needs a block that returns one tensor, {rep.block.node.name} returns {describe(x)}")
        return x
