"""One optimizer step, as the `train` section's step controls say: phases, accumulation, precision,
several processes. Mixed into the loop's Trainer (which owns the model and the data).

A step takes the rows one optimizer step covers (`batch` x `accumulate`, drawn from the run's
seeded permutation) and, for each phase in order (one when the section has none), runs
`accumulate` micro-batches of `batch` rows; under DDP / FSDP this rank computes its stride of
each micro-batch. Each micro-batch's mean loss is weighted by its share of the step's rows
(times the process count, which DDP divides back out), so the summed gradient is exactly the
gradient of the step's mean loss: `accumulate 4` with `batch 8` is `batch 32`, and N processes
are one. Only the last micro-batch synchronizes gradients (DDP's no_sync for the others).

`precision bf16 | fp16` runs the forward pass and loss under autocast (fp16 with a gradient
scaler, whose state is checkpointed); `compile` runs the model through torch.compile.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flashc.ir.dims import Sym
from flashc.ir.train import LossTerm, Phase
from flashc.train import distributed
from flashc.train.dataset import Dataset
from flashc.train.losses import compile_loss
from flashc.train.optim import Schedule, make_optimizer

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class RunPhase:
    """A phase at run time: its loss closure, optimizer, schedule, parameters and fp16 scaler."""

    name: str
    loss: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    parameters: list[torch.nn.Parameter]
    scaler: Any = None  # torch.amp.GradScaler under fp16


class Steps:
    """The step half of the Trainer: wrapping the model for the world, and one optimizer step."""

    # set by the Trainer
    model: torch.nn.Module
    config: Any
    device: torch.device
    world: distributed.World
    extra_losses: dict[str, Callable[..., torch.Tensor]]
    horizon: int
    steps_per_epoch: int

    def prepare(self, compiled: bool) -> torch.nn.Module:
        """The module a training step calls: DDP / FSDP for several processes, torch.compile'd if asked."""
        net = distributed.wrap(self.model, self.world, self.device, unused=bool(self.config.phases))
        return torch.compile(net) if compiled else net

    def make_phases(self) -> list[RunPhase]:
        """The section's phases (or the one implicit phase: its loss, optimizer and schedule, every parameter)."""
        phases = self.config.phases or (Phase("", self.config.loss, self.config.optimizer, self.config.schedule, (), ()),)
        out = []
        for phase in phases:
            if phase.parameters:
                seen: dict[int, torch.nn.Parameter] = {}
                for path in phase.parameters:
                    p = self.model.get_parameter(path)
                    seen.setdefault(id(p), p)
                params = list(seen.values())
            else:
                params = list(self.model.parameters())
            optimizer = make_optimizer(phase.optimizer, params)
            schedule = Schedule(phase.schedule, optimizer, self.horizon, self.steps_per_epoch)
            scaler = torch.amp.GradScaler(self.device.type) if self.config.precision == "fp16" else None
            out.append(RunPhase(phase.name, compile_loss(phase.loss, self.extra_losses, self.sizes()), optimizer,
                                schedule, params, scaler))
        return out

    def sizes(self) -> dict[str, tuple[str, int]]:
        """Where each symbolic size (`B`, `T`) can be read at run time: (a tensor's name, its axis)."""
        found: dict[str, tuple[str, int]] = {}
        for name, t in [(v.name, v.type) for v in self.graph.inputs] + list(self.config.targets):
            for axis, d in enumerate(t.shape):
                if isinstance(d, Sym) and d.op == "name":
                    found.setdefault(str(d), (name, axis))
        return found

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST.get(self.config.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def noise(self, rows: int, key: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """N(0, 1) samples for the `noise` inputs of ``rows`` rows, from a generator seeded by the run's
        seed and ``key`` (epoch, step): the same in any process count and after a resume."""
        if not self.config.noise:
            return {}
        g = torch.Generator().manual_seed(hash((self.config.seed,) + key) & 0x7FFF_FFFF_FFFF)
        types = {v.name: v.type for v in self.graph.inputs}
        return {n: torch.randn((rows,) + tuple(int(d) for d in types[n].shape[1:]), generator=g) for n in self.config.noise}

    def rows(self, data: Dataset, index: np.ndarray, noise: dict[str, torch.Tensor], at: np.ndarray) -> dict[str, torch.Tensor]:
        """The tensors of rows ``index`` (their positions ``at`` in the step pick their noise)."""
        env = self.tensors(data, index)
        env.update({n: t[at].to(self.device) for n, t in noise.items()})
        return env

    def micro_batches(self, count: int) -> list[np.ndarray]:
        """Positions 0..count-1 of a step's rows cut into its `accumulate` micro-batches."""
        k = self.config.accumulate
        if self.config.batch == "full" or k == 1:
            return [part for part in np.array_split(np.arange(count), k) if len(part)]
        size = int(self.config.batch)
        return [np.arange(i, min(i + size, count)) for i in range(0, count, size)]

    def run_step(self, index: np.ndarray, key: tuple[int, int]) -> tuple[float, int, list[float], bool]:
        """One optimizer step (every phase) over the step's rows ``index``. Returns this step's summed
        loss over its rows (all ranks), the row count, each phase's summed loss, and whether any
        process asked to stop (Ctrl-C), so all stop at the same step. A non-finite loss leaves the
        weights as they were (no optimizer step)."""
        noise = self.noise(len(index), key)
        chunks = self.micro_batches(len(index))
        sums = [0.0] * len(self.phases)
        here = 0
        for p, phase in enumerate(self.phases):
            phase.optimizer.zero_grad(set_to_none=True)
            for j, chunk in enumerate(chunks):
                at = distributed.part(chunk, self.world)
                share = distributed.weight(len(at), len(index), self.world)
                if len(at) == 0:  # fewer rows than processes: take part in the collectives, add nothing
                    at = chunk[:1]
                elif p == 0:
                    here += len(at)
                env = self.adversarial(self.rows(self.splits.train, index[at], noise, at))
                sync = j == len(chunks) - 1 or not self.world.active or self.world.shard
                with self.autocast(), (contextlib.nullcontext() if sync else self.net.no_sync()):
                    loss = self.penalty(phase.loss(self.forward(env, self.net)))
                    value = loss.item()
                    scaled = loss * share
                    (phase.scaler.scale(scaled) if phase.scaler else scaled).backward()
                sums[p] += value * len(at) if share else 0.0
            total = distributed.all_sum([*sums, here, float(self.stop_requested)], self.world, self.device)
            if not math.isfinite(total[p]):
                return sum(total[:len(sums)]), int(total[-2]), total[:len(sums)], bool(total[-1])
            self.apply(phase)
        total = distributed.all_sum([*sums, here, float(self.stop_requested)], self.world, self.device)
        return sum(total[:len(sums)]), int(total[-2]), total[:len(sums)], bool(total[-1])

    def apply(self, phase: RunPhase) -> None:
        """Clip, step the phase's optimizer (through the fp16 scaler), advance its per-step schedule."""
        if phase.scaler is not None:
            phase.scaler.unscale_(phase.optimizer)
        if self.config.clip_grad:
            torch.nn.utils.clip_grad_norm_(phase.parameters, self.config.clip_grad)
        if phase.scaler is not None:
            phase.scaler.step(phase.optimizer)
            phase.scaler.update()
        else:
            phase.optimizer.step()
        phase.schedule.after_step()

    # --- checkpoint state of the phases ---------------------------------------------------
    def optimizer_state(self) -> dict[str, Any]:
        """All phases' optimizer states as one position-keyed state dict (one phase: its own, as
        before); a merged group carries its phase's name. Collective under FSDP."""
        states = [distributed.full_optimizer_state(self.model, ph.optimizer, self.world) for ph in self.phases]
        if len(states) == 1:
            return states[0]
        merged: dict[str, Any] = {"state": {}, "param_groups": []}
        offset = 0
        for ph, state in zip(self.phases, states):
            if not state:
                return {}
            merged["state"].update({int(i) + offset: v for i, v in state["state"].items()})
            merged["param_groups"] += [{**g, "params": [int(i) + offset for i in g["params"]], "phase": ph.name}
                                       for g in state["param_groups"]]
            offset += sum(len(g["params"]) for g in state["param_groups"])
        return merged

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        distributed.load_weights(self.model, state, self.world)

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        if len(self.phases) == 1:
            distributed.load_optimizer_state(self.model, self.phases[0].optimizer, state, self.world)
            return
        offset = 0
        for ph in self.phases:
            groups = [g for g in state["param_groups"] if g.get("phase") == ph.name]
            ids = [int(i) for g in groups for i in g["params"]]
            own = {"state": {int(i) - offset: v for i, v in state["state"].items() if int(i) in ids},
                   "param_groups": [{k: (([int(i) - offset for i in v]) if k == "params" else v)
                                     for k, v in g.items() if k != "phase"} for g in groups]}
            distributed.load_optimizer_state(self.model, ph.optimizer, own, self.world)
            offset += len(ids)

    def phase_state(self) -> dict[str, Any]:
        """Schedules (and fp16 scalers) of the phases, for info.json."""
        out: dict[str, Any] = {"schedules": {ph.name: ph.schedule.state_dict() for ph in self.phases}}
        scalers = {ph.name: ph.scaler.state_dict() for ph in self.phases if ph.scaler is not None}
        if scalers:
            out["scalers"] = scalers
        return out

    def load_phase_state(self, info: dict[str, Any]) -> None:
        schedules = info.get("schedules") or {self.phases[0].name: info["schedule"]}
        for ph in self.phases:
            ph.schedule.load_state_dict(schedules[ph.name])
            if info.get("horizon", self.horizon) != self.horizon:
                ph.schedule.set_horizon(self.horizon)
            if ph.scaler is not None and ph.name in info.get("scalers", {}):
                ph.scaler.load_state_dict(info["scalers"][ph.name])


def loss_terms(config: Any) -> list[tuple[str, LossTerm]]:
    """(phase name, loss) of each phase; the one implicit phase is named ""."""
    return [(ph.name, ph.loss) for ph in config.phases] or [("", config.loss)]
