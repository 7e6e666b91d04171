"""Application: calling a layer or a block (and dispatching repeat and sequential)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flashc.build.scope import Scope
from flashc.build.state import BuilderState
from flashc.build.values import Block, Layer, Moe, Poison, Repeat, Sequential, Tensor, _Abort, describe
from flashc.diagnostics import Span, did_you_mean
from flashc.ir.graph import Value
from flashc.ops.base import snake


class Apply(BuilderState):
    def apply(self, func: Any, args: list[tuple[Any, Span]], kwargs: dict, span: Span, scope: Scope) -> Any:
        """Call a layer, block, repeat, sequential or builtin with (value, span) arguments."""
        if isinstance(func, Layer):
            return self.apply_layer(func, args, kwargs, span, scope)
        if isinstance(func, Block):
            return self.apply_block(func, args, kwargs, span, scope)
        if isinstance(func, Repeat):
            return self.apply_repeat(func, args, kwargs, span, scope)
        if isinstance(func, Sequential):
            return self.apply_sequential(func, args, kwargs, span, scope)
        if func == "repeat":
            return self.make_repeat(args, kwargs, span, scope)
        if func == "sequential":
            return self.make_sequential(args, kwargs, span, scope)
        if isinstance(func, Moe):
            return self.apply_moe(func, args, kwargs, span, scope)
        if func == "moe":
            return self.make_moe(args, kwargs, span, scope)
        if func == "moe_aux":
            return self.moe_aux(args, kwargs, span, scope)
        if func == "scan":
            return self.make_scan(args, kwargs, span, scope)
        raise self.fail(span, f"{describe(func)} cannot be called")

    # layers
    def apply_layer(self, layer: Layer, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        cls = layer.op
        if layer.weights is not None or layer.path is not None:
            tensors, attrs, ties = dict(layer.tensors), dict(layer.attrs), dict(layer.ties)
            extra_tensors, extra_attrs, extra_ties = self.bind_args(cls, args, kwargs, span, tensors_only=True)
            tensors.update(extra_tensors)
        else:
            tensors, attrs, ties = self.bind_args(cls, args, kwargs, span)
            tensors = {**layer.tensors, **tensors}
            attrs = {**layer.attrs, **attrs}
            ties = {**layer.ties, **ties}
        required = [i.name for i in cls.inputs if not i.optional and not i.variadic]
        if not tensors and (required or any(i.variadic and not i.optional for i in cls.inputs)):
            return Layer(cls, attrs, ties, tensors, span, path=layer.path)
        missing = [n for n in required if n not in tensors]
        if missing and not any(isinstance(a[0], Tensor) for a in args):  # `cross = attention(heads, kv = m)`
            return Layer(cls, attrs, ties, tensors, span, path=layer.path)
        if missing:
            raise self.fail(span, f"`{cls.name}` is missing its input `{missing[0]}`")
        attrs = self.complete_attrs(cls, attrs, span)
        attrs, tensors = self.resolve_dims(cls, attrs, tensors, span)
        ordered: list[Value | None] = []
        for inp in cls.inputs:
            got = tensors.get(inp.name)
            if inp.variadic:
                ordered.extend(t.value for t in (got or []))
            else:
                ordered.append(got.value if got is not None else None)
        return self.emit(cls, attrs, ordered, span, scope, layer=layer, ties=ties)

    # blocks
    def apply_block(self, block: Block, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        params = block.node.params
        bound = dict(block.bound)
        names = [p.name for p in params]
        free = [n for n in names if n not in bound]
        if len(args) > len(free):
            raise self.fail(span, f"block {block.node.name} takes {len(names)} argument(s), got {len(args) + len(bound)}")
        for (value, _), name in zip(args, free):
            bound[name] = value
        for key, (value, aspan) in kwargs.items():
            if key not in names:
                raise self.fail(aspan, f"block {block.node.name} has no parameter `{key}`", did_you_mean(key, names))
            bound[key] = value
        missing = [p for p in params if p.name not in bound and p.default is None]
        if missing:
            return replace(block, bound=bound)
        if block.path is not None:
            prefix, owner = block.path, block.owner
        else:
            prefix = scope.fresh(snake(block.node.name))
            owner = (scope.owner, prefix)
            prefix = self.claim_path(prefix, owner)
        return self.run_block(block, bound, prefix, owner, span)

    def run_block(self, block: Block, bound: dict, prefix: str, owner: object, span: Span) -> Any:
        inner = Scope({}, block.scope, prefix, owner)
        for p in block.node.params:
            value = bound[p.name] if p.name in bound else self.eval(p.default, inner)
            if isinstance(value, (Layer, Block, Repeat, Sequential)) and value.path is None:
                # a layer handed to the block takes the parameter's name: `downsample` -> `layer2.0.downsample`
                self.bind(p.name, replace(value), inner, span)
            else:
                inner.vars[p.name] = value
        with self.entered(block.node, block.node.name, bound, span), self.framed("block", block.node.name, prefix, span):
            returned = self.run_body(block.node.body, inner)
        if returned is None:
            raise self.fail(block.node.span, f"block {block.node.name} has no `return`")
        if any(isinstance(r, Poison) for r in returned):
            raise _Abort()
        return returned[0] if len(returned) == 1 else tuple(returned)
