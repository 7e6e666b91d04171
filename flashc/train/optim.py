"""Optimizers and learning-rate schedules from the spec's choices.

Schedules step once per epoch, except `warmup_cosine`, whose warmup is counted
in optimizer steps (as GPT-2's `warmup = 2000`). `reduce_on_plateau` reads the
monitored validation metric.

`cosine` (without `t_max`) and `warmup_cosine` end at the run's horizon: the total
epochs. They are closed forms of (step, horizon), so when a resumed run asks for more
epochs (`--resume --epochs 81` after 40) the horizon moves to the new total and the lr
from then on is the one a run planned for 81 epochs would use at that point: it keeps
falling to `min_lr` at the new last epoch and never restarts. Past its horizon a cosine
stays at `min_lr`; `cosine(t_max = N)` has a fixed period instead and, like torch's
CosineAnnealingLR, climbs back up after N epochs.
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
        self.optimizer = optimizer
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
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
            floor = _floor(o["min_lr"], optimizer)

            def cosine(epoch: int) -> float:
                if o["t_max"]:  # a fixed period: torch's CosineAnnealingLR, which climbs back after t_max
                    return _cosine(floor, epoch / o["t_max"], clamp=False)
                return _cosine(floor, epoch / self.epochs)

            self.inner = S.LambdaLR(optimizer, cosine)
        elif name == "warmup_cosine":
            self.per_step = True
            floor = _floor(o["min_lr"], optimizer)

            def factor(step: int) -> float:
                total = max(1, self.epochs * self.steps_per_epoch)
                warmup = min(o["warmup"], total - 1)
                if step < warmup:
                    return (step + 1) / warmup
                return _cosine(floor, (step - warmup) / max(1, total - warmup))

            self.inner = S.LambdaLR(optimizer, factor)
        else:
            self.on_metric = True
            self.monitor = o["monitor"]
            self.inner = S.ReduceLROnPlateau(optimizer, factor=o["factor"], patience=o["patience"])

    def set_horizon(self, epochs: int) -> None:
        """Move the end of the schedule to ``epochs`` (a resumed run that was given more epochs);
        the current lr moves at once onto the curve of the new horizon."""
        self.epochs = epochs
        if isinstance(self.inner, torch.optim.lr_scheduler.LambdaLR):
            lrs = [base * fn(self.inner.last_epoch) for base, fn in zip(self.inner.base_lrs, self.inner.lr_lambdas)]
            for group, lr in zip(self.optimizer.param_groups, lrs):
                group["lr"] = lr
            self.inner._last_lr = lrs

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


def _floor(min_lr: float, optimizer: torch.optim.Optimizer) -> float:
    """`min_lr` as a fraction of the starting lr (LambdaLR multiplies the starting lr)."""
    base = optimizer.param_groups[0]["lr"]
    return min_lr / base if base else 0.0


def _cosine(floor: float, progress: float, clamp: bool = True) -> float:
    """Half a cosine from 1 down to ``floor`` over progress 0..1, then ``floor`` (``clamp``) or back up."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (min(1.0, progress) if clamp else progress)))
