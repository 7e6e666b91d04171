"""The IR: a typed, immutable graph of op applications with named weights.

Nodes never hold tensors, only value names and types; weights are declared by
their state-dict path (``decoder.0.attention.q.weight``) so every backend names
them the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flashc.diagnostics import Span
from flashc.ir.types import TensorType

if TYPE_CHECKING:
    from flashc.ir.train import TrainConfig


class Op(Protocol):
    """What the IR needs of an op: its name, its settings and where it was written.

    The registry's ``flashc.ops.base.Op`` satisfies this; the IR never imports
    the registry, so the graph stays a plain data structure below the ops layer.
    """

    name: str
    attrs: Mapping[str, Any]
    span: Span


@dataclass(frozen=True)
class WeightSpec:
    """A parameter or buffer an op needs: shape, initialiser, whether trained."""

    shape: tuple[int, ...]
    init: tuple = ("zeros",)  # ("uniform", bound) | ("normal", std) | ("zeros",) | ("ones",)
    buffer: bool = False
    dtype: str = "float32"

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Weight:
    """A weight in the graph, under its state-dict path."""

    path: str
    spec: WeightSpec
    span: Span


@dataclass(frozen=True)
class Value:
    """A tensor in the graph. Its name is the user's: `logits`, or `blocks.0.x` for a value of a block.

    ``ident`` (dots -> underscores) is unique in a graph too, so a backend can use it as a variable.
    """

    name: str
    type: TensorType

    @property
    def ident(self) -> str:
        return self.name.replace(".", "_")


@dataclass(frozen=True)
class Frame:
    """One application of a block or container that a node was emitted inside.

    Nodes carry the stack of frames they were built in (outermost first), so a
    report can fold the twelve identical blocks of a ``repeat`` and a picture can
    draw a block as one box, without re-reading the spec.
    """

    kind: str  # "block" | "repeat" | "sequential"
    name: str  # the block's name (`Decoder`), or the container's kind
    path: str  # the layer-path prefix of this application (`blocks.3`)
    id: int  # unique per application: two uses of one shared block differ here
    span: Span  # where it is applied
    count: int = 1  # a repeat: how many applications it stacks


@dataclass(frozen=True)
class Node:
    """One op application. ``layer`` is the state-dict prefix of its weights.

    ``weights`` maps the op's local weight names to graph weight paths; a tied
    weight simply points at another layer's path.
    """

    op: Op
    inputs: tuple[Value | None, ...]
    outputs: tuple[Value, ...]
    layer: str | None
    weights: tuple[tuple[str, str], ...]
    span: Span
    frames: tuple[Frame, ...] = ()  # the block applications around this node, outermost first
    # Sub-graphs this node runs (a scan's step). Their nodes read the node's inputs and any value
    # computed before the node by name; their weights are the enclosing graph's.
    bodies: tuple[Graph, ...] = ()

    @property
    def weight_map(self) -> dict[str, str]:
        return dict(self.weights)


@dataclass(frozen=True)
class Graph:
    """A checked model: inputs, nodes in execution order, outputs, weights."""

    name: str
    params: dict[str, Any]
    inputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[tuple[str, Value], ...]
    weights: dict[str, Weight]
    span: Span
    train: TrainConfig | None = None
    source_hash: str = ""
    layers: dict[str, str] = field(default_factory=dict)  # layer path -> op name

    @property
    def parameter_count(self) -> int:
        return sum(w.spec.size for w in self.weights.values() if not w.spec.buffer)

    def walk(self) -> Iterator[Node]:
        """Every node, those inside the bodies of other nodes included (a body's right after its node)."""
        for node in self.nodes:
            yield node
            for body in node.bodies:
                yield from body.walk()

    def layer_parameter_count(self, layer: str) -> int:
        prefix = layer + "."
        return sum(
            w.spec.size
            for p, w in self.weights.items()
            if not w.spec.buffer and p.startswith(prefix) and p.rsplit(".", 1)[0] == layer
        )
