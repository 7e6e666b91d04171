"""Section `train`: time per training step, flashc's Trainer against a hand-written module and loop.

flashc's side is its own training step: the `Trainer` of flashc/train/loop.py, built as `fit`
builds it, timed over `train_epoch` on a fixed synthetic dataset. The hand-written side is the
same architecture (bench/handwritten.py, same parameter count, same weights at the start) and a
plain loop: index a batch, forward, the same loss, zero_grad, backward, step with the same
optimizer. Repetitions alternate A, B, A, B so drift of this busy machine hits both alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import flashc
from bench import handwritten as hw
from bench.common import SPECS, Column, Table, interleave, median, ms_fmt, paired_ratios, quantile, ratio_fmt, sci_fmt
from flashc.train.data import load_data
from flashc.train.dataset import split
from flashc.train.loop import Trainer

SEQ = 64  # tokens per text-classifier sample


@dataclass
class Case:
    name: str
    spec: str
    kind: str  # key for handwritten.from_flashc
    hand: Callable[[], torch.nn.Module]
    optimizer: Callable[[Any], torch.optim.Optimizer]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    l2: float  # strength of the L2 penalty on every *.weight of a Linear / Conv (0 = none)
    batch: int
    steps: tuple[int, int]  # steps per repetition: (quick, full)
    describe: str


CASES = [
    Case("mlp", "mlp_digits", "mlp", hw.DigitsMLP, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
         F.cross_entropy, 1e-4, 32, (40, 150), "MLP 64-128-64-10, SGD+momentum, L2 1e-4, batch 32"),
    Case("cnn", "lenet5", "lenet5", hw.LeNet5,
         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
         F.cross_entropy, 1e-4, 64, (10, 40), "LeNet-5, SGD+Nesterov, L2 1e-4, batch 64"),
    Case("transformer", "text_classifier", "text", hw.TextClassifier,
         lambda p: torch.optim.AdamW(p, lr=3e-4, weight_decay=0.01),
         lambda logits, y: F.cross_entropy(logits, y, label_smoothing=0.05), 0.0, 16, (3, 10),
         f"text classifier d=128, 2 post-norm layers, T={SEQ}, AdamW, batch 16"),
]


def synthetic(spec: flashc.Spec, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed dataset with the spec's inputs and its `label` target."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    params = spec.graph.params
    for v in spec.graph.inputs:
        shape = [n if str(d) == "B" else SEQ if str(d) == "T" else int(d) for d in v.type.shape]
        if v.type.dtype == "float32":
            out[v.name] = rng.standard_normal(shape).astype(np.float32)
        elif v.type.dtype == "int64":
            out[v.name] = rng.integers(0, params["vocab"], shape)
        else:  # padding: true at the tail of each sequence, at least half the tokens kept
            keep = rng.integers(shape[1] // 2, shape[1] + 1, shape[0])
            out[v.name] = np.arange(shape[1])[None, :] >= keep[:, None]
    out["label"] = rng.integers(0, params["classes"], n)
    return out


def _check_same_training(case: Case, spec: flashc.Spec) -> None:
    """The hand-written loop must do what the spec's train section says; fail loudly if a spec drifts."""
    cfg = spec.train
    assert cfg.batch == case.batch, (case.name, cfg.batch)
    strengths = {p.strength for p in cfg.penalties if p.kind == "l2"}
    assert strengths == ({case.l2} if case.l2 else set()), (case.name, strengths)
    assert cfg.clip_grad is None and cfg.adversarial is None, case.name


class HandLoop:
    """The plain loop: the data as tensors, a fresh permutation per epoch, batches by slicing it."""

    def __init__(self, case: Case, model: torch.nn.Module, data: dict[str, np.ndarray], input_names: list[str]):
        self.case, self.model = case, model
        self.inputs = [torch.from_numpy(data[n]) for n in input_names]
        self.label = torch.from_numpy(data["label"])
        self.optimizer = case.optimizer(model.parameters())
        self.decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]

    def epoch(self) -> float:
        self.model.train()
        n, bs = len(self.label), self.case.batch
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            loss = self.case.loss(self.model(*(t[idx] for t in self.inputs)), self.label[idx])
            if self.case.l2:
                loss = loss + self.case.l2 * sum(p.pow(2).sum() for p in self.decay)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
        return total


def run(ctx: Any) -> Table:
    table = Table(
        "train: ms per training step, flashc Trainer.train_epoch vs hand-written module + loop (target ratio <= 1.03)",
        [Column("model", "model"), Column("params", "params", "{:,}"), Column("steps", "steps/rep"),
         Column("reps", "reps"), Column("flashc_ms", "flashc ms", ms_fmt), Column("hand_ms", "hand ms", ms_fmt),
         Column("ratio", "ratio", ratio_fmt), Column("ratio_p25", "p25", ratio_fmt),
         Column("ratio_p75", "p75", ratio_fmt), Column("ratio_of_medians", "med/med", ratio_fmt),
         Column("fwd_diff", "fwd diff", sci_fmt),
         Column("verdict", "<=1.03")],
    )
    reps = 3 if ctx.quick else 15
    for case in CASES:
        spec = flashc.load(SPECS / f"{case.spec}.flash")
        _check_same_training(case, spec)
        steps = case.steps[0 if ctx.quick else 1]
        n = steps * case.batch
        data = synthetic(spec, n)
        splits = split(load_data(data, spec.graph), 0.0, 0.0, spec.train.seed)
        trainer = Trainer(spec, splits, None, "cpu", quiet=True)  # as flashc.train.loop.fit builds it
        torch.manual_seed(0)
        hand = case.hand()
        assert hw.parameter_count(hand) == hw.parameter_count(trainer.model) == spec.parameter_count, case.name
        hw.from_flashc(case.kind, hand, trainer.model.state_dict())
        fwd_diff = _forward_diff(spec, trainer.model, hand, data)
        loop = HandLoop(case, hand, data, [v.name for v in spec.graph.inputs])
        fns = {"flashc": functools.partial(trainer.train_epoch, None), "hand": loop.epoch}
        interleave(fns, 1)  # warm-up: allocator, optimizer state, first-call costs
        seconds = interleave(fns, reps)
        per_step = {k: [s / steps * 1e3 for s in v] for k, v in seconds.items()}
        pairs = paired_ratios(per_step["flashc"], per_step["hand"])
        ratio = median(pairs)
        table.add(model=case.name, spec=f"specs/{case.spec}.flash", describe=case.describe,
                  params=spec.parameter_count, steps=steps, reps=reps, batch=case.batch,
                  flashc_ms=median(per_step["flashc"]), hand_ms=median(per_step["hand"]), ratio=ratio,
                  ratio_p25=quantile(pairs, 0.25), ratio_p75=quantile(pairs, 0.75),
                  ratio_of_medians=median(per_step["flashc"]) / median(per_step["hand"]), fwd_diff=fwd_diff,
                  verdict="yes" if ratio <= 1.03 else "NO", flashc_ms_samples=per_step["flashc"],
                  hand_ms_samples=per_step["hand"])
    table.notes += [f"{c.name}: {c.describe}" for c in CASES]
    table.notes += [
        "ratio = median of the per-pair ratios flashc/hand (each pair run back to back, order alternating), "
        "p25/p75 of those; med/med = median flashc ms / median hand ms, more exposed to drift",
        "fwd diff: max |flashc - hand| of the eval-mode forward with the same weights (same function check)",
        "the hand loop computes the same loss as the spec (cross-entropy, label smoothing, L2 on weights)",
    ]
    return table


def _forward_diff(spec: flashc.Spec, model: torch.nn.Module, hand: torch.nn.Module, data: dict[str, np.ndarray]) -> float:
    args = [torch.from_numpy(data[v.name][:8]) for v in spec.graph.inputs]
    model.eval()
    hand.eval()
    with torch.no_grad():
        diff = (model(*args) - hand(*args)).abs().max().item()
    model.train()
    hand.train()
    return diff
