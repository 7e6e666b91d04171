"""The losses of the seed, and the evaluation of a spec's loss expression.

A custom loss is a checked expression tree (`LossTerm`) over these built-ins,
numbers, + - * /, and the tensor functions of FUNCTIONS (`arange(B)`, `ones_like(x)`,
`transpose(x)`, `mean(x)`, ...) applied to outputs, inputs and targets: evaluating it
never runs user code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from flashc.ir.train import LossTerm

Tensor = torch.Tensor


def cross_entropy(logits: Tensor, target: Tensor, weight: tuple | None = None, label_smoothing: float = 0.0,
                  ignore_index: int = -100) -> Tensor:
    """Class scores vs class ids; [B, C] or sequences [B, T, C] against [B, T]."""
    w = torch.tensor(weight, dtype=logits.dtype, device=logits.device) if weight is not None else None
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1).long(), weight=w,
                           label_smoothing=label_smoothing, ignore_index=ignore_index)


def binary_cross_entropy(logits: Tensor, target: Tensor, pos_weight: float | None = None) -> Tensor:
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device) if pos_weight is not None else None
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=pw)


def kl_div(a: Tensor, b: Tensor, form: str = "gaussian") -> Tensor:
    """gaussian: KL(N(mu, exp(logvar)) || N(0, I)) per sample, averaged over the batch (the VAE term);
    log_probs: KL(target || input) with `a` log-probabilities and `b` probabilities."""
    if form == "gaussian":
        mu, logvar = a, b
        per_sample = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).flatten(1).sum(1)
        return per_sample.mean()
    return F.kl_div(a, b, reduction="batchmean")


def mse(a: Tensor, b: Tensor) -> Tensor:
    return F.mse_loss(a, b.to(a.dtype))


def mae(a: Tensor, b: Tensor) -> Tensor:
    return F.l1_loss(a, b.to(a.dtype))


def huber(a: Tensor, b: Tensor, delta: float = 1.0) -> Tensor:
    return F.huber_loss(a, b.to(a.dtype), delta=delta)


def hinge(logits: Tensor, target: Tensor, margin: float = 1.0) -> Tensor:
    """Multi-class margin: sum over wrong classes of max(0, margin - s_true + s_j), / C."""
    return F.multi_margin_loss(logits.reshape(-1, logits.shape[-1]), target.reshape(-1).long(), margin=margin)


def contrastive(a: Tensor, b: Tensor, same: Tensor, margin: float = 1.0) -> Tensor:
    """Hadsell et al. 2006: pull same pairs together, push others beyond `margin`."""
    d = F.pairwise_distance(a.flatten(1), b.flatten(1))
    y = same.reshape(-1).to(d.dtype)
    return 0.5 * (y * d.pow(2) + (1 - y) * F.relu(margin - d).pow(2)).mean()


def dice(logits: Tensor, mask: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - Dice overlap of sigmoid(logits) with a 0/1 mask, per sample, averaged."""
    p = torch.sigmoid(logits).flatten(1)
    m = mask.to(p.dtype).flatten(1)
    score = (2 * (p * m).sum(1) + smooth) / (p.sum(1) + m.sum(1) + smooth)
    return 1 - score.mean()


LOSSES: dict[str, Callable[..., Tensor]] = {
    "cross_entropy": cross_entropy, "binary_cross_entropy": binary_cross_entropy, "kl_div": kl_div, "mse": mse,
    "mae": mae, "huber": huber, "hinge": hinge, "contrastive": contrastive, "dice": dice,
}


def _like(fill: float) -> Callable[..., Tensor]:
    return lambda x: torch.full_like(x, fill, dtype=x.dtype if x.is_floating_point() else torch.float32)


# Tensor functions a loss expression may apply (their shapes are checked by flashc/build/loss_exprs.py).
FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "ones_like": _like(1.0), "zeros_like": _like(0.0),
    "full_like": lambda x, value: torch.full_like(x, value, dtype=x.dtype if x.is_floating_point() else torch.float32),
    "transpose": lambda x: x.transpose(-1, -2), "detach": lambda x: x.detach(),
    "mean": lambda x: x.float().mean() if not x.is_floating_point() else x.mean(),
    "sum": lambda x: x.float().sum() if not x.is_floating_point() else x.sum(),
    "log": torch.log, "exp": torch.exp, "abs": torch.abs, "sqrt": torch.sqrt, "sigmoid": torch.sigmoid,
    "softplus": F.softplus, "relu": torch.relu, "tanh": torch.tanh, "square": torch.square,
}


def evaluate(term: LossTerm, env: dict[str, Tensor], extra: dict[str, Callable[..., Tensor]] | None = None,
             sizes: dict[str, tuple[str, int]] | None = None) -> Tensor:
    """The value of a loss expression over named tensors (outputs, inputs, targets)."""
    return compile_loss(term, extra, sizes)(env)


def compile_loss(term: LossTerm, extra: dict[str, Callable[..., Tensor]] | None = None,
                 sizes: dict[str, tuple[str, int]] | None = None) -> Callable[[dict], Tensor]:
    """The loss expression as one closure, resolved once instead of walked at every step.
    ``sizes``: where a symbolic size such as `B` in `arange(B)` is read, (tensor name, axis)."""
    if term.kind == "number":
        value = torch.tensor(term.value)
        return lambda env: value
    if term.kind == "output":
        name = term.name
        return lambda env: env[name]
    if term.kind == "neg":
        inner = compile_loss(term.children[0], extra, sizes)
        return lambda env: -inner(env)
    if term.kind == "binop":
        a, b = (compile_loss(c, extra, sizes) for c in term.children)
        op = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y}[term.name]
        return lambda env: op(a(env), b(env))
    if term.kind == "fn" and term.name == "arange":
        return _arange(term, sizes or {})
    options: dict[str, Any] = dict(term.options)
    if term.kind == "fn":
        fn = FUNCTIONS[term.name]
    else:
        fn = (extra or {}).get(term.name) or LOSSES[term.name]
    if not term.children:  # a call written before calls kept their arguments as terms: names only
        names = term.args
        return lambda env: fn(*(env[a] for a in names), **options)
    parts = [compile_loss(c, extra, sizes) for c in term.children]
    return lambda env: fn(*(p(env) for p in parts), **options)


def _arange(term: LossTerm, sizes: dict[str, tuple[str, int]]) -> Callable[[dict], Tensor]:
    """`arange(B)`: 0..B-1 (int64) where B is a number or a symbolic size read off a tensor of the step."""
    size = term.args[0]
    if size.isdigit():
        n = int(size)
        return lambda env: torch.arange(n)
    name, axis = sizes[size]
    return lambda env: torch.arange(env[name].shape[axis], device=env[name].device)


def classification_output(term: LossTerm, sizes: dict[str, tuple[str, int]] | None = None,
                          ) -> Callable[[dict], tuple[Tensor, Tensor]] | None:
    """The (logits, target) tensors of the first cross_entropy/hinge in the loss, for accuracy
    (either may be an expression: `cross_entropy(logits, arange(B))`)."""
    if term.kind == "call" and term.name in ("cross_entropy", "hinge"):
        if not term.children:
            logits, target = term.args[:2]
            return lambda env: (env[logits], env[target])
        a, b = (compile_loss(c, None, sizes) for c in term.children[:2])
        return lambda env: (a(env), b(env))
    for child in term.children:
        found = classification_output(child, sizes)
        if found:
            return found
    return None
