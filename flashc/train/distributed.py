"""Several processes training one model: torch.distributed's DDP (gloo on CPU, NCCL on CUDA) and
FSDP2 (`fully_shard`, `--shard`), and the launcher behind `flashc train --nproc N`.

The spec's `batch` is the *global* batch. Each optimizer step takes the same rows from the
run's seeded permutation as a one-process run would, and rank r computes rows r, r + N, ...
of it (DistributedSampler's striding, reshuffled each epoch by the run's seed): the shards
are disjoint and their union is the one-process batch. Each rank scales its mean loss by
``rows_here * N / rows_in_step`` so that DDP's (and FSDP's) gradient average over ranks is
exactly the gradient of the one-process batch mean, even for a last, uneven batch; summed
losses, counts and correct answers are all-reduced, so the metrics equal the one-process
ones. Nothing depends on N but the arithmetic's rounding, so a run resumes with another N.

Rank 0 alone writes checkpoints (the same format as one process; with FSDP the full state is
gathered to rank 0 first); every rank reads them back when a run resumes, so the run folder
must be one every rank sees (one machine, or a shared file system).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass
class World:
    """Where this process stands: its rank among ``size`` processes, and how the model is spread."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    shard: bool = False  # FSDP: each rank holds a shard of every weight and of its optimizer state
    owned: bool = False  # this run started the process group (and ends it)

    @property
    def main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """True inside a worker that torchrun (or `--nproc`) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str, shard: bool) -> tuple[World, str]:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the
    environment); returns the world and this rank's device (cuda:LOCAL_RANK on CUDA). One process
    (no torchrun) is a world of one: no process group, nothing sharded."""
    if not launched():
        return World(), device
    import torch.distributed as dist

    rank, size, local = (int(os.environ[k]) for k in ENV_VARS)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend, device_id=torch.device(device) if cuda else None)
    return World(rank, size, local, backend, shard, owned), device


def check_world(world: World, config: Any, rows: int) -> None:
    """What several processes cannot do with this section, as a clear error before the first step."""
    if not world.active:
        return
    batch = rows if config.batch == "full" else int(config.batch)
    if batch < world.size:
        raise ValueError(f"`batch {config.batch}` is the global batch: {world.size} processes need at least "
                         f"{world.size} rows per micro-batch")
    if world.shard and (config.penalties or config.adversarial):
        what = "`regularize`" if config.penalties else "`adversarial`"
        raise ValueError(f"{what} is not supported with --shard (FSDP) yet; use DDP (without --shard), or "
                         "weight_decay instead of an L2 penalty")


def leave(world: World) -> None:
    """Leave the process group (after the last collective), so the process exits cleanly."""
    if world.active and world.owned:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()  # nobody tears the group down while another process still talks to it
            dist.destroy_process_group()


def part(index: np.ndarray, world: World) -> np.ndarray:
    """This rank's rows of one step's rows: every size-th, from its rank (disjoint, union = all)."""
    return index[world.rank::world.size]


def weight(rows_here: int, rows_in_step: int, world: World) -> float:
    """The factor on this rank's mean loss that makes the ranks' averaged gradient the step's mean."""
    return rows_here * world.size / rows_in_step


def all_sum(values: Iterable[float], world: World, device: torch.device) -> list[float]:
    """Each value summed over all ranks (float64, so counts and sums stay exact)."""
    values = list(values)
    if not world.active:
        return values
    import torch.distributed as dist

    on = device if world.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=on)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World) -> None:
    if world.active:
        import torch.distributed as dist

        dist.barrier()


def wrap(module: torch.nn.Module, world: World, device: torch.device, unused: bool) -> torch.nn.Module:
    """The module a training step calls: DDP around it, or the module itself sharded in place
    (FSDP2). ``unused``: some parameters may get no gradient in a step (phases that each train a
    part of the model), which DDP must be told."""
    if not world.active:
        return module
    if world.shard:
        from torch.distributed.fsdp import fully_shard

        for child in module.children():  # one FSDP unit per top-level layer with weights, then the rest
            if any(True for _ in child.parameters()) and not _shares_weights(child, module):
                fully_shard(child)
        fully_shard(module)
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=unused)


def _shares_weights(child: torch.nn.Module, root: torch.nn.Module) -> bool:
    """A tied weight used inside and outside ``child`` must stay in one FSDP unit (the root's)."""
    inside = {id(p) for p in child.parameters()}
    outside = {id(p) for name, c in root.named_children() if c is not child for p in c.parameters()}
    outside |= {id(p) for p in root.parameters(recurse=False)}
    return bool(inside & outside)


def full_weights(module: torch.nn.Module, world: World) -> dict[str, torch.Tensor]:
    """The module's whole state dict on CPU (gathered from the shards under FSDP; every rank
    must call it, rank 0 gets the tensors)."""
    if world.shard and world.active:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return module.state_dict()


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], world: World) -> None:
    """Load a full state dict (from a checkpoint every rank read) into the module; under FSDP each
    rank copies in its own shard of each weight."""
    if not (world.shard and world.active):
        module.load_state_dict(state, strict=True)
        return
    from torch.distributed.tensor import DTensor

    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            full = state[name].to(tensor.device, tensor.dtype)
            if isinstance(tensor, DTensor):
                tensor.to_local().copy_(_shard_like(full, tensor).to_local())
            else:
                tensor.copy_(full)


def _shard_like(full: torch.Tensor, like: Any) -> Any:
    """``full`` cut as the DTensor ``like`` is (each rank keeps its part; every rank holds ``full``)."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


def _names(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters, in the order its state dict numbers them."""
    by_id = {id(p): name for name, p in module.named_parameters()}
    return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, world: World) -> dict[str, Any]:
    """The optimizer's state dict keyed by parameter position, as one process writes it (gathered
    under FSDP, whose own full state dict is keyed by parameter name)."""
    if not (world.shard and world.active):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    state = get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not world.main:
        return {}
    order = {name: i for i, name in enumerate(_names(module, optimizer))}
    return {"state": {order[name]: entry for name, entry in state["state"].items()},
            "param_groups": [{**g, "params": [order[n] for n in g["params"]]} for g in state["param_groups"]]}


def load_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
                         world: World) -> None:
    """Load a position-keyed optimizer state (any process count wrote it) into this rank's optimizer;
    under FSDP each state tensor shaped like its parameter is cut to this rank's shard."""
    if not (world.shard and world.active):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.tensor import DTensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded: dict[int, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        p = params[int(index)]
        sharded[int(index)] = {k: _shard_like(v.to(p.device), p) if isinstance(p, DTensor) and torch.is_tensor(v)
                               and v.shape == p.shape else v for k, v in entry.items()}
    optimizer.load_state_dict({"state": sharded, "param_groups": state["param_groups"]})


def command(argv: list[str], nproc: int) -> list[str]:
    """torchrun's command that starts ``nproc`` local workers of this `flashc train` (without --nproc)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "flashc", *argv]


def launch(argv: list[str], nproc: int) -> int:
    """Run ``flashc`` ``argv`` in ``nproc`` local processes through torch's own launcher and return
    its exit status. Each worker is limited to its share of the CPU threads (torchrun's default
    of one thread, unless OMP_NUM_THREADS says otherwise)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    process = subprocess.Popen(command(argv, nproc), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:  # the workers got the Ctrl-C too: they stop at a step boundary and save
        return process.wait()
