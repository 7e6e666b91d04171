"""Optimizers and learning-rate schedules from the spec's choices.

Schedules step once per epoch, except `warmup_cosine`, whose warmup is counted
in optimizer steps (as GPT-2's `warmup = 2000`). `reduce_on_plateau` reads the
monitored validation metric.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from flashc.ir.train import Choice


def make_optimizer(choice: Choice, params: Any) -> torch.optim.Optimizer:
    o = choice.kwargs
    if choice.name == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"],
                               weight_decay=o["weight_decay"])
    if choice.name in ("adam", "adamw"):
        cls = torch.optim.Adam if choice.name == "adam" else torch.optim.AdamW
        return cls(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    if choice.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o["lr"], alpha=o["alpha"], momentum=o["momentum"], eps=o["eps"],
                                   weight_decay=o["weight_decay"])
    return torch.optim.Adagrad(params, lr=o["lr"], weight_decay=o["weight_decay"])


class Schedule:
    """Wraps a torch scheduler and knows whether it steps per batch, per epoch or on a metric."""

    def __init__(self, choice: Choice | None, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
        self.per_step = False
        self.on_metric = False
        self.monitor = "val_loss"
        o = choice.kwargs if choice else {}
        name = choice.name if choice else "constant"
        S = torch.optim.lr_scheduler
        if name == "constant":
            self.inner = S.LambdaLR(optimizer, lambda _: 1.0)
        elif name == "step":
            self.inner = S.StepLR(optimizer, step_size=o["step_size"], gamma=o["gamma"])
        elif name == "exponential":
            self.inner = S.ExponentialLR(optimizer, gamma=o["gamma"])
        elif name == "cosine":
            self.inner = S.CosineAnnealingLR(optimizer, T_max=o["t_max"] or epochs, eta_min=o["min_lr"])
        elif name == "warmup_cosine":
            self.per_step = True
            total = max(1, epochs * steps_per_epoch)
            warmup = min(o["warmup"], total - 1)
            base = optimizer.param_groups[0]["lr"]
            floor = o["min_lr"] / base if base else 0.0

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = min(1.0, (step - warmup) / max(1, total - warmup))
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

            self.inner = S.LambdaLR(optimizer, factor)
        else:
            self.on_metric = True
            self.monitor = o["monitor"]
            self.inner = S.ReduceLROnPlateau(optimizer, factor=o["factor"], patience=o["patience"])

    def after_step(self) -> None:
        if self.per_step:
            self.inner.step()

    def after_epoch(self, metrics: dict[str, float]) -> None:
        if self.on_metric:
            self.inner.step(metrics.get(self.monitor, metrics["val_loss"]))
        elif not self.per_step:
            self.inner.step()

    def state_dict(self) -> dict[str, Any]:
        state = self.inner.state_dict()
        state.pop("lr_lambdas", None)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.inner, "lr_lambdas"):
            state = {**state, "lr_lambdas": [None] * len(self.inner.lr_lambdas)}
        self.inner.load_state_dict(state)
