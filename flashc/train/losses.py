"""The losses of the seed, and the evaluation of a spec's loss expression.

A custom loss is a checked expression tree (`LossTerm`) over these built-ins,
numbers and + - * /: evaluating it never runs user code.
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


def evaluate(term: LossTerm, env: dict[str, Tensor], extra: dict[str, Callable[..., Tensor]] | None = None) -> Tensor:
    """The value of a loss expression over named tensors (outputs, inputs, targets)."""
    return compile_loss(term, extra)(env)


def compile_loss(term: LossTerm, extra: dict[str, Callable[..., Tensor]] | None = None) -> Callable[[dict], Tensor]:
    """The loss expression as one closure, resolved once instead of walked at every step."""
    if term.kind == "number":
        value = torch.tensor(term.value)
        return lambda env: value
    if term.kind == "output":
        name = term.name
        return lambda env: env[name]
    if term.kind == "neg":
        inner = compile_loss(term.children[0], extra)
        return lambda env: -inner(env)
    if term.kind == "binop":
        a, b = (compile_loss(c, extra) for c in term.children)
        op = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y}[term.name]
        return lambda env: op(a(env), b(env))
    fn = (extra or {}).get(term.name) or LOSSES[term.name]
    options: dict[str, Any] = dict(term.options)
    names = term.args
    return lambda env: fn(*(env[a] for a in names), **options)


def classification_output(term: LossTerm) -> tuple[str, str] | None:
    """The (logits, target) pair of the first cross_entropy/hinge in the loss, for accuracy."""
    if term.kind == "call" and term.name in ("cross_entropy", "hinge"):
        return term.args[0], term.args[1]
    for child in term.children:
        found = classification_output(child)
        if found:
            return found
    return None
