"""Nodes: one op application becomes one IR node, with its type inferred and its weights created."""

from __future__ import annotations

from typing import Any

from flashc.build import limits
from flashc.build.scope import Scope
from flashc.build.state import BuilderState
from flashc.build.values import Layer, Tensor, WeightRef, _Abort
from flashc.diagnostics import FlashError, Span
from flashc.ir.graph import Node, Value, Weight, WeightSpec
from flashc.ops.base import Op


class Nodes(BuilderState):
    def charge(self, path: str, spec: WeightSpec, span: Span) -> None:
        """Count a new weight's bytes; past the budget the build stops here, before anything is allocated."""
        added = spec.size * limits.ITEMSIZE.get(spec.dtype, 8)
        budget, hint = self.budget, (f"check the sizes (and --set values) this layer comes from; "
                                     f"{limits.BUDGET_ENV} sets the limit (bytes, or 64G)")
        if added > budget.tensor:
            raise self.fail(span, f"`{path}` {list(spec.shape)} has {spec.size:,} parameters "
                                  f"({limits.human_bytes(added)}), more than {limits.human_bytes(budget.tensor)} "
                                  f"({budget.tensor_origin}) holds at once", hint)
        self.weight_bytes += added
        if self.weight_bytes - added > budget.total:
            raise _Abort()  # reported once, at the weight that crossed the budget
        if self.weight_bytes > budget.total:
            raise self.fail(span, f"with `{path}` ({spec.size:,} parameters) the weights reach "
                                  f"{limits.human_bytes(self.weight_bytes)}, above the budget of "
                                  f"{limits.human_bytes(budget.total)} ({budget.total_origin})", hint)

    def emit(self, cls: type[Op], attrs: dict, inputs: list[Value | None], span: Span, scope: Scope | None,
             layer: Layer | None = None, ties: dict[str, WeightRef] | None = None) -> Any:
        """Create one node: infer its type, create or reuse its weights."""
        self.count_work(1, span)
        if scope is None:
            attrs = self.complete_attrs(cls, attrs, span)
        op = cls(attrs, span)
        types = [v.type if v is not None else None for v in inputs]
        for inp, v in zip(cls.inputs, inputs):
            if v is not None and inp.dtypes and v.type.dtype not in inp.dtypes:
                raise self.fail(span, f"`{cls.name}` input `{inp.name}` must be {' or '.join(inp.dtypes)}, got {v.type}",
                                f"convert it first with `cast(..., {inp.dtypes[0]})`")
        try:
            result = op.infer(*types)
            specs = op.weights(*types)
            module = op.torch_module(*types)
        except FlashError as exc:
            self.report(exc)
            raise _Abort() from None
        ties = ties or {}
        for local, ref in ties.items():
            if local not in specs:
                raise self.fail(span, f"`{cls.name}` has no weight `{local}` to tie")
            if ref.spec.shape != specs[local].shape:
                raise self.fail(
                    span,
                    f"cannot tie `{local}` to `{ref.path}`: {cls.name} needs shape {list(specs[local].shape)}, "
                    f"`{ref.path}` has {list(ref.spec.shape)}",
                )
        path = None
        weight_map: dict[str, str] = {}
        if specs or module is not None:
            path = self.layer_path(cls, layer, scope, span)
            for local, spec in specs.items():
                full = ties[local].path if local in ties else f"{path}.{local}"
                weight_map[local] = full
                if local in ties:
                    continue
                existing = self.weights.get(full)
                if existing is None:
                    self.charge(full, spec, span)
                    self.weights[full] = Weight(full, spec, span)
                elif existing.spec != spec:
                    raise self.fail(
                        span,
                        f"layer `{path}` shares weights but is applied to a different shape: "
                        f"`{local}` needs {list(spec.shape)}, it has {list(existing.spec.shape)}",
                    )
            previous = self.layer_ops.setdefault(path, cls.name)
            if previous != cls.name:
                raise self.fail(span, f"layer `{path}` is a {previous}, not a {cls.name}")
            if layer is not None and layer.path is not None:
                layer.weights = dict(weight_map)
        results = result if isinstance(result, tuple) else (result,)
        rank = max((r.rank for r in results), default=0)
        if rank > limits.MAX_RANK:
            raise self.fail(span, f"`{cls.name}` gives a tensor of rank {rank:,}, above the limit of {limits.MAX_RANK} axes")
        base = f"{self.prefix}.{cls.name}" if self.prefix else cls.name  # `blocks.0.gelu`
        outs = tuple(self.new_value(base, t) for t in results)
        self.nodes.append(Node(op, tuple(inputs), outs, path, tuple(weight_map.items()), span, tuple(self.frames)))
        tensors = tuple(Tensor(o) for o in outs)
        return tensors if isinstance(result, tuple) else tensors[0]
