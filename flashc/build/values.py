"""What evaluating a spec gives: tensors, layers, blocks, repeats, sequentials, weight references.

Numbers, strings and tuples are plain Python values; everything else a name can
be bound to is one of the classes here. :data:`POISON` marks a failed statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flashc.diagnostics import Span
from flashc.ir.dims import Sym
from flashc.ir.graph import Value, WeightSpec
from flashc.ops.base import Op
from flashc.syntax import ast

if TYPE_CHECKING:
    from flashc.build.scope import Scope


class Poison:
    """The value of a statement that already failed; using it reports nothing more."""


POISON = Poison()


class _Abort(Exception):
    """Unwind a statement whose error is already recorded."""


@dataclass(frozen=True)
class Tensor:
    value: Value


@dataclass(frozen=True)
class DType:
    """A dtype written bare where an op takes one: `cast(m, float32)`."""

    name: str


@dataclass(frozen=True)
class WeightRef:
    path: str
    spec: WeightSpec


@dataclass
class Layer:
    """An op with its hyperparameters bound, not yet applied (``embedding(vocab, d)``)."""

    op: type[Op]
    attrs: dict[str, Any]
    ties: dict[str, WeightRef]
    tensors: dict[str, Any]
    span: Span
    path: str | None = None
    weights: dict[str, str] | None = None  # filled at first application


@dataclass
class Block:
    """A block definition closed over its scope, possibly with some arguments bound."""

    node: ast.BlockDef
    scope: Scope
    bound: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # set when named: every application shares weights
    owner: object = None


@dataclass
class Repeat:
    """`repeat(n, Block)`: n applications, independent weights unless shared."""

    count: int
    block: Block
    shared: bool
    span: Span
    path: str | None = None  # set when named: `blocks = repeat(12, Decoder)`


@dataclass
class Sequential:
    """`sequential(a, b, ...)`: layers and blocks applied in order, weights under `name.0`, `name.1`, ..."""

    items: tuple
    span: Span
    path: str | None = None


@dataclass
class Moe:
    """`moe(Expert, experts = 8, k = 2)`, not yet applied; when named, every use shares its weights."""

    block: Block
    experts: int
    route: dict[str, Any]  # moe_route's settings: k, router, normalize
    dense: bool
    span: Span
    path: str | None = None


def describe(value: Any) -> str:
    """A short, user-facing description of an evaluated value."""
    if isinstance(value, Tensor):
        return f"a tensor {value.value.type}"
    if isinstance(value, Layer):
        return f"the layer `{value.path or value.op.name}`"
    if isinstance(value, Block):
        missing = [p.name for p in value.node.params if p.name not in value.bound and p.default is None]
        return f"the block {value.node.name}" + (f" (not applied: `{missing[0]}` is missing)" if missing else "")
    if isinstance(value, Repeat):
        return "a repeat"
    if isinstance(value, Sequential):
        return "a sequential"
    if isinstance(value, Moe):
        return "a moe"
    if isinstance(value, DType):
        return f"the dtype {value.name}"
    if isinstance(value, WeightRef):
        return f"the weight `{value.path}`"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float, Sym)):
        return f"the number {value}" if not isinstance(value, Sym) else f"the dimension {value}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return type(value).__name__
