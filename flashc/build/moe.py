"""`moe(Expert, experts = n, k = 2)`: a sparse mixture of experts, each token run by its k chosen experts.

Weights follow Mixtral's names: the router is `gate` (a linear without bias), the
experts are `experts.0`, `experts.1`, ... each with the Expert block's own layers
(`experts.3.w1`). The graph holds the router, then per expert a dispatch of its
tokens, the expert's block on those tokens only, and one combine (see
flashc/ops/moe.py), so the work is proportional to k / n, not to n.

`moe_aux()` is the load-balancing loss (Switch/Mixtral) summed over every moe
applied before it; declared as an output (`output balance = moe_aux()`) it can be
a term of the train section's loss: `loss cross_entropy(logits, y) + 0.01 * balance`.
"""

from __future__ import annotations

from typing import Any

from flashc.build.scope import Scope
from flashc.build.state import BuilderState
from flashc.build.values import Block, Layer, Moe, Tensor, describe
from flashc.diagnostics import Span
from flashc.ir.graph import Value
from flashc.ops.base import REGISTRY, Param
from flashc.ops.moe import MoeRoute

SETTINGS = ("experts", "k", "router", "normalize", "dense")


class Moes(BuilderState):
    def make_moe(self, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        tensors = [a for a in args if isinstance(a[0], Tensor)]
        rest = [a for a in args if not isinstance(a[0], Tensor)]
        if not rest or len(rest) > 2:
            raise self.fail(span, "moe takes an expert block and a count: `moe(Expert, experts = 8, k = 2)`")
        block, bspan = rest[0]
        if isinstance(block, Layer):
            block = self.layer_as_block(block, span)
        if not isinstance(block, Block):
            raise self.fail(bspan, f"moe needs an expert block, got {describe(block)}")
        if not [p for p in block.node.params if p.name not in block.bound]:
            raise self.fail(bspan, f"moe needs a block that takes the tokens; {block.node.name} takes no free argument")
        given = dict(kwargs)
        if len(rest) == 2:
            if "experts" in given:
                raise self.fail(rest[1][1], "the number of experts is given twice")
            given["experts"] = rest[1]
        for key, (_, aspan) in given.items():
            if key not in SETTINGS:
                raise self.fail(aspan, f"moe has no argument `{key}`", f"its arguments are: {', '.join(SETTINGS)}")
        if "experts" not in given:
            raise self.fail(span, "moe needs `experts`, the number of experts", "e.g. `moe(Expert, experts = 8, k = 2)`")
        experts = self.check_param(_Settings, "experts", given.pop("experts"))
        dense = self.check_param(_Settings, "dense", given.pop("dense")) if "dense" in given else False
        route = self.complete_attrs(MoeRoute, {k: self.check_param(MoeRoute, k, v) for k, v in given.items()}, span)
        if route["k"] > experts:
            raise self.fail(given.get("k", (None, span))[1], f"moe picks k = {route['k']} of only {experts} experts")
        moe = Moe(block, experts, route, dense, span)
        return self.apply_moe(moe, tensors, {}, span, scope) if tensors else moe

    def apply_moe(self, moe: Moe, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        if kwargs or len(args) != 1 or not isinstance(args[0][0], Tensor):
            raise self.fail(span, "a moe is applied to one tensor of tokens [.., features]")
        x: Tensor = args[0][0]
        if moe.path is not None:
            path, owner = moe.path, scope.owner
        else:
            path = scope.fresh("moe")
            owner = (scope.owner, path)
            path = self.claim_path(path, owner)
        gate = Layer(REGISTRY["linear"], {"out_features": moe.experts, "bias": False}, {}, {}, span,
                     path=self.claim_path(f"{path}.gate", owner))
        logits = self.apply_layer(gate, [(x, span)], {}, span, scope)
        weights, index = self.emit(MoeRoute, moe.route, [logits.value], span, scope=None)
        self.moe_routes.append((logits.value, index.value))  # for moe_aux()
        first = next(p.name for p in moe.block.node.params if p.name not in moe.block.bound)
        parts: list[Value] = []
        for e in range(moe.experts):
            attrs = {"expert": e, "dense": moe.dense}
            tokens, at, w = self.emit(REGISTRY["moe_dispatch"], attrs, [x.value, weights.value, index.value], span,
                                      scope=None)
            y = self.run_block(moe.block, {**moe.block.bound, first: tokens}, f"{path}.experts.{e}", (owner, e), span)
            if not isinstance(y, Tensor):
                raise self.fail(span, f"a moe expert returns one tensor; {moe.block.node.name} returns {describe(y)}")
            parts += [y.value, at.value, w.value]
        return self.emit(REGISTRY["moe_combine"], {}, [x.value, *parts], span, scope=None)

    def moe_aux(self, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        """The load-balancing losses of every moe so far, summed (one scalar)."""
        if args or kwargs:
            raise self.fail(span, "moe_aux() takes no arguments: it sums the balance losses of the moes before it")
        routes = self.moe_routes
        if not routes:
            raise self.fail(span, "moe_aux() needs a moe applied before it", "apply `moe(Expert, experts = n)` first")
        total = None
        for logits, index in routes:
            loss = self.emit(REGISTRY["moe_balance"], {}, [logits, index], span, scope=None)
            total = loss if total is None else self.emit(REGISTRY["add"], {}, [total.value, loss.value], span,
                                                         scope=None)
        return total


class _Settings:
    """The schema of moe's own settings, checked like an op's."""

    name = "moe"
    params = {"experts": Param(int, doc="number of experts", minimum=1), "dense": Param(bool, False)}
