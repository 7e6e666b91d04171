"""The checked `train` section: plain data the training loop consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flashc.diagnostics import Span
from flashc.ir.types import TensorType


@dataclass(frozen=True)
class LossTerm:
    """A loss expression tree: a built-in loss call, a number, or arithmetic."""

    # "call" (a built-in loss) | "number" | "binop" | "neg" | "output" (a named output, input or target)
    # | "fn" (a tensor function: arange, ones_like, transpose, mean, ...; see flashc/train/exprs.py)
    kind: str
    name: str = ""  # loss or function name for calls, operator for binops, the tensor's name for outputs
    args: tuple[str, ...] = ()  # a call's tensor arguments when they are plain names ("" for an expression)
    options: tuple[tuple[str, Any], ...] = ()
    value: float = 0.0
    children: tuple[LossTerm, ...] = ()  # operands; a call's tensor arguments; a function's arguments
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
class Phase:
    """One part of a training step with its own loss, optimizer, schedule and parameters
    (`phase disc { ... }`): a GAN's discriminator step, then its generator step."""

    name: str
    loss: LossTerm
    optimizer: Choice
    schedule: Choice | None
    patterns: tuple[str, ...]  # `params "disc.*"`; () means every parameter
    parameters: tuple[str, ...]  # the weight paths the patterns matched
    span: Span | None = None


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
    accumulate: int = 1  # micro-batches of `batch` rows per optimizer step
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    compile: bool = False  # torch.compile the model for training
    phases: tuple[Phase, ...] = ()  # several optimizers in turn; `loss` is then the sum of theirs
    noise: tuple[str, ...] = ()  # float inputs the loop fills with N(0, 1) samples at every step
