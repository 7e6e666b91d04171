"""Section `train_scale`: training samples per second of the transformer train step
(specs/text_classifier.flash, AdamW, batch 16, T = 64) in 1 and 2 processes (DDP on gloo),
eager against `--compile`, fp32 against `precision bf16`, as ratios to 1 process, eager, fp32.

Each variant runs in its own worker process (`python -m bench.train_scale --worker ...`, under
torch.distributed.run for 2 processes) that builds flashc's Trainer exactly as `fit` does in that
world, trains one warm-up epoch (torch.compile compiles there), then times whole epochs of the
same synthetic data and prints samples/s. All variants share the machine's threads: 1 process
uses all of them, 2 processes one share each, so the process ratio is what DDP buys on the same
cores (on this 2-core machine shared with other work it cannot reach 2). Workers run in turn,
repeated in alternating order; the table gives medians.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, SPECS, Column, Table, median, ratio_fmt

VARIANTS = {  # name: (processes, compile, precision)
    "1 process, eager, fp32": (1, False, "fp32"),
    "1 process, eager, bf16": (1, False, "bf16"),
    "1 process, compile, fp32": (1, True, "fp32"),
    "2 processes (DDP), eager, fp32": (2, False, "fp32"),
}
BASE = "1 process, eager, fp32"


def worker(steps: int, epochs: int, compiled: bool, precision: str) -> None:
    """Inside one process of a variant: train, time, and (rank 0) print {"samples_per_s": ...}."""
    import torch

    import flashc
    from bench.train import synthetic
    from flashc.train import distributed
    from flashc.train.data import load_data
    from flashc.train.dataset import split
    from flashc.train.loop import Trainer, step_controls

    spec = flashc.load(SPECS / "text_classifier.flash")
    world, device = distributed.join("cpu", shard=False)
    torch.set_num_threads(max(1, int(os.environ.get("BENCH_THREADS", "2")) // world.size))
    config = step_controls(spec.train, {"compile": compiled, "precision": precision})
    batch = int(config.batch)
    splits = split(load_data(synthetic(spec, steps * batch), spec.graph), 0.0, 0.0, config.seed)
    trainer = Trainer(spec, splits, None, device, True, config=config, world=world)
    trainer.train_epoch(None)  # warm-up (and compilation)
    times = []
    for _ in range(epochs):
        distributed.barrier(world)
        start = time.perf_counter()
        trainer.train_epoch(None)
        distributed.barrier(world)
        times.append(time.perf_counter() - start)
    if world.main:
        print(json.dumps({"samples_per_s": steps * batch / median(times), "epochs": times}), flush=True)
    distributed.leave(world)


def _launch(name: str, steps: int, epochs: int, threads: int) -> float:
    processes, compiled, precision = VARIANTS[name]
    args = ["-m", "bench.train_scale", "--worker", "--steps", str(steps), "--epochs", str(epochs),
            "--precision", precision] + (["--compile"] if compiled else [])
    if processes > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] + args
    env = {**os.environ, "BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(max(1, threads // processes))}
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: worker failed ({done.returncode}): {done.stderr[-2000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("{"))
    return float(json.loads(line)["samples_per_s"])


def run(ctx: Any) -> Table:
    steps, epochs, reps = (6, 2, 1) if ctx.quick else (20, 3, 3)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for rep in range(reps):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            rates[name].append(_launch(name, steps, epochs, ctx.threads))
    base = median(rates[BASE])
    table = Table(
        f"train_scale: samples/s of the transformer train step (text_classifier, batch 16, T 64), "
        f"{ctx.threads} threads in all; median of {reps} runs x {epochs} epochs of {steps} steps",
        [Column("variant", "variant"), Column("samples_per_s", "samples/s", "{:.1f}"),
         Column("ratio", f"/ {BASE}", ratio_fmt)],
    )
    for name, values in rates.items():
        table.add(variant=name, samples_per_s=median(values), ratio=median(values) / base, samples=values)
    table.notes += [
        "2 processes: DDP on gloo, `batch 16` is the global batch (8 rows each), gradients all-reduced every "
        "step; the threads are split between the processes (same cores, so < 2x is expected on a small machine)",
        "compile: torch.compile (inductor) of the model, timed after a warm-up epoch that compiles it",
        "bf16: autocast on CPU; its speed depends on the CPU's bf16 support (often slower without AMX/AVX512-BF16)",
        "the machine is shared with other work: compare the ratios of one run, not absolute numbers across runs",
    ]
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_scale")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--precision", default="fp32")
    args = p.parse_args(argv)
    worker(args.steps, args.epochs, args.compile, args.precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
