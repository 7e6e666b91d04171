"""The checked `train` section: plain data the training loop consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flashc.diagnostics import Span
from flashc.ir.types import TensorType


@dataclass(frozen=True)
class LossTerm:
    """A loss expression tree: a built-in loss call, a number, or arithmetic."""

    kind: str  # "call" | "number" | "binop" | "neg" | "output" (a scalar model output, e.g. a balance loss)
    name: str = ""  # loss name for calls, operator for binops
    args: tuple[str, ...] = ()  # tensor names a call reads (outputs, inputs, targets)
    options: tuple[tuple[str, Any], ...] = ()
    value: float = 0.0
    children: tuple[LossTerm, ...] = ()
    span: Span | None = None


@dataclass(frozen=True)
class Choice:
    """A named choice with options, e.g. `adamw(lr = 6e-4)` or `l2(1e-4)`."""

    name: str
    options: tuple[tuple[str, Any], ...]
    span: Span

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class Penalty:
    kind: str  # "l1" | "l2"
    strength: float
    patterns: tuple[str, ...]
    parameters: tuple[str, ...]  # the weight paths the patterns matched
    span: Span


@dataclass(frozen=True)
class TrainConfig:
    targets: tuple[tuple[str, TensorType], ...]
    loss: LossTerm
    optimizer: Choice
    schedule: Choice | None = None
    batch: int | str = 32  # an int, or "full" for batch gradient descent
    epochs: int = 10
    early_stop: Choice | None = None
    penalties: tuple[Penalty, ...] = ()
    adversarial: Choice | None = None
    clip_grad: float | None = None
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    span: Span | None = None
