"""The builder's state: the graph under construction and the diagnostics collected so far.

Every mixin of :class:`~flashc.build.builder.Builder` derives from this class, so
each sees the same fields and the same ways to report an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flashc.build import limits
from flashc.build.values import Tensor, _Abort
from flashc.diagnostics import Diagnostic, FlashError, Span
from flashc.ir.graph import Frame, Node, Value, Weight


def _signature(bound: dict[str, Any]) -> tuple:
    """A block application's arguments other than tensors: numbers and strings by value, the rest by identity."""
    plain = (bool, int, float, str, tuple)
    return tuple(sorted((k, v if isinstance(v, plain) else id(v)) for k, v in bound.items() if not isinstance(v, Tensor)))


@dataclass
class BuilderState:
    file: str
    sources: dict[str, str]
    overrides: dict[str, Any]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    weights: dict[str, Weight] = field(default_factory=dict)
    layer_ops: dict[str, str] = field(default_factory=dict)
    layer_owner: dict[str, object] = field(default_factory=dict)
    value_names: set[str] = field(default_factory=set)
    value_counters: dict[str, int] = field(default_factory=dict)
    renames: dict[str, str] = field(default_factory=dict)
    prefix: str = ""  # the layer path of the block whose body is being evaluated: `blocks.0`
    dim_sources: dict[str, tuple[Value, int]] = field(default_factory=dict)
    inputs: list[Value] = field(default_factory=list)
    outputs: list[tuple[str, Value]] = field(default_factory=list)
    name_hint: str | None = None  # the layer path for an op applied as it is named
    moe_routes: list[tuple[Value, Value]] = field(default_factory=list)  # (router logits, experts chosen) per moe
    frames: list[Frame] = field(default_factory=list)  # the block applications being built, outermost first
    frame_count: int = 0
    depth: int = 0  # nesting being evaluated, in the units of flashc.build.limits
    work: int = 0  # op and block applications so far
    weight_bytes: int = 0  # bytes of the weights created so far
    budget: limits.Budget = field(default_factory=limits.weight_budget)
    claim_next: dict[str, int] = field(default_factory=dict)  # path -> where its next free suffix may be
    owned: dict[object, set[str]] = field(default_factory=dict)  # owner -> the layer paths it claimed
    output_names: set[str] = field(default_factory=set)  # of ``outputs``
    input_names: set[str] = field(default_factory=set)  # of ``inputs``
    applying: list[tuple[tuple, str]] = field(default_factory=list)  # ((block definition, arguments), name)

    @contextmanager
    def framed(self, kind: str, name: str, path: str, span: Span, count: int = 1) -> Iterator[None]:
        """Nodes emitted inside carry this application in their ``frames``."""
        self.frame_count += 1
        self.frames.append(Frame(kind, name, path, self.frame_count, span, count))
        try:
            yield
        finally:
            self.frames.pop()

    @contextmanager
    def entered(self, node: object, name: str, bound: dict[str, Any], span: Span) -> Iterator[None]:
        """A block's body is being evaluated. Nothing in a spec is conditional, so a block
        already being applied that is applied again with the same arguments (tensors aside)
        would recurse for ever: an error naming the cycle. With other arguments it may be
        a finite higher-order use (`Residual(f = Residual(f = mlp))`); the depth limit bounds
        the rest. Each application also counts against the depth and work limits."""
        key = (node, _signature(bound))
        for i, (other, _) in enumerate(self.applying):
            if other == key:
                cycle = " -> ".join([n for _, n in self.applying[i:]] + [name])
                raise self.fail(span, f"block {name} applies itself: {cycle}",
                                "a block cannot apply itself, directly or through other blocks; "
                                "`repeat(n, Block)` stacks copies")
        self.count_work(1, span)
        self.applying.append((key, name))
        self.depth += limits.BLOCK_COST
        try:
            yield
        finally:
            self.depth -= limits.BLOCK_COST
            self.applying.pop()

    def count_work(self, n: int, span: Span) -> None:
        """Count op or block applications; past :data:`~flashc.build.limits.MAX_WORK` the build stops."""
        self.work += n
        if self.work - n > limits.MAX_WORK:
            raise _Abort()  # reported once, where the limit was crossed
        if self.work > limits.MAX_WORK:
            raise self.fail(span, f"the model needs more than {limits.MAX_WORK:,} op and block applications "
                                  f"(the limit) by here", "check the repeat counts and the sizes they come from")

    # --- diagnostics -----------------------------------------------------------------
    def report(self, exc: FlashError) -> None:
        self.diagnostics.extend(exc.diagnostics)

    def fail(self, span: Span, message: str, hint: str | None = None) -> _Abort:
        self.diagnostics.append(Diagnostic(span, message, hint))
        return _Abort()
