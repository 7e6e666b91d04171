"""The training loop: gradient descent as the spec's `train` section describes it.

`batch full` takes one step per epoch (batch gradient descent), `batch N`
mini-batches, `batch 1` one sample per step (stochastic). L1/L2 penalties are
added to the loss (unlike AdamW's `weight_decay`, which shrinks weights
directly and is not part of the loss or its gradient). Early stopping keeps
the best weights and restores them at the end when asked.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flashc.diagnostics import Span, error
from flashc.ir.graph import Graph
from flashc.ir.train import TrainConfig
from flashc.train import checkpoint, distributed
from flashc.train.data import load_data
from flashc.train.dataset import Dataset, Splits, split
from flashc.train.losses import classification_output, compile_loss, mse
from flashc.train.steps import Steps
from flashc.weights import select_weights, write_atomic, write_error


@dataclass
class FitResult:
    """What a run produced: per-epoch metrics, why it stopped, test metrics, the model."""

    history: list[dict[str, float]]
    stop_reason: str
    best_epoch: int | None
    test: dict[str, float]
    run: Path | None
    model: Any = field(repr=False, default=None)
    failed: bool = False
    interrupted: bool = False  # Ctrl-C: the run saved where it stood; `--resume` continues it exactly


def check_device(name: str) -> str | None:
    """Why ``name`` cannot train here (an unknown device, CUDA missing), or None when it can."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return "unknown device; use cpu, cuda or cuda:N"
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "this PyTorch has no CUDA device (torch.cuda.is_available() is False); use --device cpu"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"there is no such CUDA device; this machine has {count} (cuda:0 to cuda:{count - 1})"
        return None
    if device.type == "mps":
        return None if torch.backends.mps.is_available() else "this PyTorch has no MPS device; use --device cpu"
    return f"training on {device.type!r} is not supported; use cpu or cuda"


def _batches(n: int, batch: int | str, epoch: int, seed: int) -> list[np.ndarray]:
    size = n if batch == "full" else int(batch)
    order = np.random.default_rng(seed * 100_003 + epoch).permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


class Trainer(Steps):
    """One run: the model, its optimizers and schedules, and the bookkeeping around them.

    ``config`` replaces the spec's train section (command-line step controls); ``world`` is this
    process's place among several (flashc/train/distributed.py); one process by default."""

    def __init__(self, spec: Any, splits: Splits, run: Path | None, device: str, quiet: bool,
                 epochs: int | None = None, config: TrainConfig | None = None,
                 world: distributed.World | None = None):
        self.spec = spec
        self.graph: Graph = spec.graph
        self.config: TrainConfig = config or spec.graph.train
        self.world = world or distributed.World()
        self.splits = splits
        self.run = run
        self.device = torch.device(device)
        self.quiet = quiet
        # Every random source a step could draw from starts from the spec's seed, so a run is the
        # same in any process (and a resumed run restores all three states).
        torch.manual_seed(self.config.seed)
        np.random.seed(self.config.seed)
        random.seed(self.config.seed)
        self.model = spec.to_torch(seed=self.config.seed).to(self.device)
        self.weight_names = list(self.graph.weights)
        self.net = self.prepare(self.config.compile)  # DDP / FSDP / torch.compile around the model
        # One optimizer step covers `batch` x `accumulate` rows (all processes together).
        batch, k = self.config.batch, self.config.accumulate
        self.step_rows = batch if batch == "full" else int(batch) * k
        self.steps_per_epoch = len(_batches(len(splits.train), self.step_rows, 0, 0))
        # The schedule's horizon: the spec's epochs, or more when a run asks for more.
        self.horizon = max(epochs or 0, self.config.epochs)
        self.input_names = [v.name for v in self.graph.inputs]
        self.output_names = [n for n, _ in self.graph.outputs]
        self.classify = classification_output(self.config.loss, self.sizes())
        self.extra_losses = self._perceptual()
        self.loss_fn = compile_loss(self.config.loss, self.extra_losses, self.sizes())
        self.phases = self.make_phases()  # one per `phase` (or the section's loss and optimizer)
        self.optimizer, self.schedule = self.phases[0].optimizer, self.phases[0].schedule
        self.penalized = [(pen.kind, pen.strength, [self.model.get_parameter(p) for p in pen.parameters])
                          for pen in self.config.penalties]
        self.history: list[dict[str, float]] = []
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None  # kept in memory for restore_best
        self.step = 0  # steps done in the current epoch: a run stopped mid-epoch resumes from here
        self.partial = (0.0, 0)  # the current epoch's summed training loss and sample count so far
        self.phase_sums = [0.0] * len(self.phases)  # the same sum per phase (when the section has phases)
        self.epoch_phase_losses: dict[str, float] = {}  # the last epoch's training loss of each named phase
        self.stop_requested = False  # Ctrl-C: stop at the next step boundary, save, return
        self.consistent = True  # between steps: the state in memory is one a checkpoint may hold

    # --- pieces of a step ---------------------------------------------------------------
    def _perceptual(self) -> dict[str, Callable[..., torch.Tensor]]:
        """`perceptual(a, b, network = Name)`: MSE between features of a frozen model of the same file."""
        terms = []

        def walk(t: Any) -> None:
            if t.kind == "call" and t.name == "perceptual":
                terms.append(t)
            for c in t.children:
                walk(c)

        walk(self.config.loss)
        if not terms:
            return {}
        opts = dict(terms[0].options)
        feature_spec = self.spec.sibling(opts["network"])
        weights = None
        if opts.get("weights"):
            weights = str(Path(self.spec.path).parent / opts["weights"])
        net = feature_spec.to_torch(weights=weights).to(self.device).eval()
        for p in net.parameters():
            p.requires_grad_(False)

        def perceptual(a: torch.Tensor, b: torch.Tensor, network: str = "", weights: str | None = None) -> torch.Tensor:
            fa, fb = net(a), net(b)
            return mse(fa, fb.detach())

        return {"perceptual": perceptual}

    def tensors(self, data: Dataset, index: np.ndarray) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(v[index])).to(self.device) for k, v in data.arrays.items()}

    def forward(self, env: dict[str, torch.Tensor], net: Any = None) -> dict[str, torch.Tensor]:
        out = (self.model if net is None else net)(*(env[n] for n in self.input_names))
        outs = out if isinstance(out, tuple) else (out,)
        return {**env, **dict(zip(self.output_names, outs))}

    def loss(self, env: dict[str, torch.Tensor]) -> torch.Tensor:
        full = self.forward(env)
        return self.loss_fn(full), full

    def penalty(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss plus the L1 / L2 penalties of the parameters their patterns chose."""
        for kind, strength, params in self.penalized:
            total = sum(w.abs().sum() if kind == "l1" else w.pow(2).sum() for w in params)
            loss = loss + strength * total
        return loss

    def adversarial(self, env: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Replace a share of the batch by FGSM / PGD examples of the float inputs."""
        adv = self.config.adversarial
        if adv is None:
            return env
        o = adv.kwargs
        floats = [n for n in self.input_names if env[n].is_floating_point()]
        count = int(round(o["share"] * len(env[self.input_names[0]])))
        if not floats or count == 0:
            return env
        steps = 1 if adv.name == "fgsm" else o["steps"]
        alpha = o["epsilon"] if adv.name == "fgsm" else (o["alpha"] or 2.5 * o["epsilon"] / steps)
        clean = {n: env[n][:count].detach() for n in floats}
        x = {n: t.clone() for n, t in clean.items()}
        if adv.name == "pgd":
            x = {n: t + torch.empty_like(t).uniform_(-o["epsilon"], o["epsilon"]) for n, t in x.items()}
        was_training = self.model.training
        self.model.eval()
        for _ in range(steps):
            for t in x.values():
                t.requires_grad_(True)
            part = {k: (x[k] if k in x else v[:count]) for k, v in env.items()}
            loss, _ = self.loss(part)
            grads = torch.autograd.grad(loss, list(x.values()))
            x = {n: (t + alpha * g.sign()).detach() for (n, t), g in zip(x.items(), grads)}
            x = {n: torch.max(torch.min(t, clean[n] + o["epsilon"]), clean[n] - o["epsilon"]) for n, t in x.items()}
        self.model.train(was_training)
        return {k: (torch.cat([x[k], v[count:]]) if k in x else v) for k, v in env.items()}

    # --- epochs -------------------------------------------------------------------------
    def train_epoch(self, progress: Any) -> tuple[float, int, str | None]:
        """One epoch from step ``self.step``; raises KeyboardInterrupt at a step boundary on Ctrl-C."""
        self.model.train()
        batches = _batches(len(self.splits.train), self.step_rows, self.epoch, self.config.seed)
        if progress is not None and self.step:
            progress.update(self.step)
        while self.step < len(batches):
            if self.stop_requested and not self.world.active:  # several processes stop together, below
                raise KeyboardInterrupt
            index = batches[self.step]
            self.consistent = False
            step_sum, rows, phase_sums, stop = self.run_step(index, (self.epoch, self.step))
            value = step_sum / rows
            if not math.isfinite(value):
                total, count = self.partial
                return total / max(count, 1), self.step, f"the loss became {value} at epoch {self.epoch + 1}, step {self.step + 1}"
            self.step += 1
            self.partial = (self.partial[0] + step_sum, self.partial[1] + rows)
            self.phase_sums = [a + b for a, b in zip(self.phase_sums, phase_sums)]
            self.consistent = True
            if stop and self.world.active:
                raise KeyboardInterrupt
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{value:.4f}", refresh=False)
        (total, count), steps = self.partial, self.step
        self.epoch_phase_losses = {f"train_{ph.name}_loss": t / max(count, 1)
                                   for ph, t in zip(self.phases, self.phase_sums) if ph.name}
        self.step, self.partial, self.phase_sums = 0, (0.0, 0), [0.0] * len(self.phases)
        self.consistent = False  # until the epoch's metrics and checkpoints are written
        return total / max(count, 1), steps, None

    @torch.no_grad()
    def measure(self, data: Dataset, prefix: str) -> dict[str, float]:
        """Loss (and accuracy / dice) over a split, in eval mode, in chunks."""
        if len(data) == 0:
            return {}
        self.model.eval()
        total, correct, n = 0.0, 0, 0
        chunk = 512 * self.world.size  # each process measures its stride of each chunk; sums are reduced
        for start in range(0, len(data), chunk):
            index = np.arange(start, min(start + chunk, len(data)))
            at = distributed.part(np.arange(len(index)), self.world)
            rows = len(at)
            with self.autocast():
                loss, env = self.loss(self.rows(data, index[at if rows else [0]], self.noise(len(index), (-1, start)),
                                                at if rows else np.arange(1)))
            total += loss.item() * rows
            n += rows
            if self.classify and rows:
                logits, target = self.classify(env)
                correct += (logits.argmax(-1) == target).float().mean().item() * rows
        total, correct, n = distributed.all_sum([total, correct, n], self.world, self.device)
        out = {f"{prefix}_loss": total / n}
        if self.classify:
            out[f"{prefix}_accuracy"] = correct / n
        return out

    def improved(self, metrics: dict[str, float]) -> bool:
        es = self.config.early_stop
        monitor = es.kwargs["monitor"] if es else "val_loss"
        if monitor not in metrics:
            return self.best is None
        value = metrics[monitor]
        if not math.isfinite(value):
            return False
        delta = es.kwargs["min_delta"] if es else 0.0
        better = self.best is None or (
            value < self.best - delta if (not es or es.kwargs["mode"] == "min") else value > self.best + delta
        )
        if better:
            self.best = value
        return better

    # --- run directory --------------------------------------------------------------------
    def save(self, tag: str, reason: str = "") -> None:
        """Checkpoint ``tag``: every process calls it (FSDP gathers the full state), the main one writes."""
        if self.run is None:
            return
        info = {"epoch": self.epoch, "step": self.step, "partial": list(self.partial), "horizon": self.horizon,
                "best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "schedule": self.schedule.state_dict(), "history": self.history, "reason": reason}
        if len(self.phases) > 1:
            info.update(self.phase_state(), phase_sums=self.phase_sums)
        elif self.phases[0].scaler is not None:
            info.update(scalers=self.phase_state()["scalers"])
        weights = distributed.full_weights(self.model, self.world)
        optimizer = self.optimizer_state()
        if self.world.main:
            state = {k: weights[k].detach().cpu().contiguous() for k in self.weight_names}
            checkpoint.save_state(self.run, tag, state, optimizer, info, self.device)
        distributed.barrier(self.world)  # nobody reads or replaces a checkpoint while it is written

    def restore(self, tag: str) -> None:
        """Continue exactly where checkpoint ``tag`` stood: weights, optimizer, schedule, random
        states, the position inside the epoch. A larger total of epochs stretches the schedule's
        horizon: from here on the lr follows the curve a run of the new total would have."""
        weights, optim_state, info = checkpoint.load(self.run, tag)
        self.load_weights(_with_aliases(self.graph, weights, str(self.run / f"{tag}.safetensors")))
        self.load_optimizer_state(optim_state)
        self.load_phase_state(info)
        if "phase_sums" in info:
            self.phase_sums = list(info["phase_sums"])
        checkpoint.restore_rng(*info["rng"], self.device)
        self.epoch, self.best, self.best_epoch = info["epoch"], info["best"], info["best_epoch"]
        self.bad_epochs, self.history = info["bad_epochs"], info["history"]
        self.step, self.partial = info.get("step", 0), tuple(info.get("partial", (0.0, 0)))
        self.rewrite_metrics()  # epochs after this checkpoint (logged before a kill) are dropped

    def rewrite_metrics(self) -> None:
        """metrics.jsonl and metrics.csv as the history says, each replaced atomically."""
        if self.run is None or not self.world.main:
            return
        write_atomic(self.run / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.history).encode())
        buf = io.StringIO()
        if self.history:
            writer = csv.DictWriter(buf, fieldnames=list(self.history[0]), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.history)
        write_atomic(self.run / "metrics.csv", buf.getvalue().encode())

    def log(self, metrics: dict[str, float]) -> None:
        if self.run is None or not self.world.main:
            return
        try:
            with (self.run / "metrics.jsonl").open("a") as fh:
                fh.write(json.dumps(metrics) + "\n")
        except OSError as exc:
            raise write_error(self.run / "metrics.jsonl", exc) from None
        keys = list(self.history[0])
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        write_atomic(self.run / "metrics.csv", buf.getvalue().encode())


def _with_aliases(graph: Graph, weights: dict[str, torch.Tensor], origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The module's state dict from checkpoint weights: a tied weight is read under any of its
    names, then stored under every state-dict key that aliases it (one tensor in the module)."""
    state = select_weights(graph, weights, origin)
    for node in graph.walk():  # a scan step's layers too
        for local, target in node.weights:
            if node.layer is not None and target != f"{node.layer}.{local}":
                state[f"{node.layer}.{local}"] = state[target]
    return state


def _plot(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for key in ("train_loss", "val_loss"):
        if key in history[0]:
            ax.plot(epochs, [h[key] for h in history], label=key, marker="o", markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    metrics = [k for k in history[0] if k.startswith("val_") and k != "val_loss"]
    if metrics:
        twin = ax.twinx()
        twin.plot(epochs, [h[metrics[0]] for h in history], color="tab:green", label=metrics[0], linestyle="--")
        twin.set_ylabel(metrics[0])
        twin.legend(loc="center right")
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())


@contextlib.contextmanager
def _stop_on_ctrl_c(trainer: Trainer) -> Iterator[None]:
    """The first Ctrl-C asks the loop to stop at the next step boundary (then it saves where it
    stands); a second one interrupts at once, keeping the last complete checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _epochs(trainer: Trainer, splits: Splits, total_epochs: int, quiet: bool, reason: str) -> tuple[str, bool]:
    """Train until ``total_epochs``, early stopping or a non-finite value; returns (why it stopped, failed)."""
    es, bar = trainer.config.early_stop, None
    try:
        while trainer.epoch < total_epochs:
            if not quiet and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=trainer.steps_per_epoch, desc=f"epoch {trainer.epoch + 1}/{total_epochs}",
                           leave=False, file=sys.stderr)
            train_loss, steps, problem = trainer.train_epoch(bar)
            if bar is not None:
                bar.close()
                bar = None
            if problem:
                return f"stopped: {problem}; kept the last good checkpoint", True
            metrics = {"epoch": trainer.epoch + 1, "steps": steps, "lr": trainer.optimizer.param_groups[0]["lr"],
                       "train_loss": train_loss, **trainer.epoch_phase_losses, **trainer.measure(splits.val, "val")}
            if not all(math.isfinite(v) for v in metrics.values()):
                bad = next(k for k, v in metrics.items() if not math.isfinite(v))
                return (f"stopped: {bad} became {metrics[bad]} at epoch {trainer.epoch + 1}; "
                        "kept the last good checkpoint"), True
            trainer.epoch += 1
            trainer.history.append(metrics)
            trainer.schedule.after_epoch(metrics)
            if trainer.improved(metrics):
                trainer.best_epoch, trainer.bad_epochs = trainer.epoch, 0
                trainer.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
                trainer.save("best")
            else:
                trainer.bad_epochs += 1
            trainer.save("last")
            trainer.log(metrics)
            trainer.consistent = True
            if not quiet:
                shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
                print(shown, flush=True)
            if es and trainer.bad_epochs >= es.kwargs["patience"]:
                return (f"early stop at epoch {trainer.epoch}: {es.kwargs['monitor']} did not improve for "
                        f"{es.kwargs['patience']} epochs (best {trainer.best:.4g} at epoch {trainer.best_epoch})"), False
        return reason, False
    finally:
        if bar is not None:
            bar.close()


def fit(spec: Any, data: Any, out: str | Path | None = None, epochs: int | None = None, resume: bool = False,
        device: str = "cpu", quiet: bool = False, test_share: float = 0.1, shard: bool = False,
        **controls: Any) -> FitResult:
    """Train ``spec`` on ``data`` as its train section says; write the run to ``out``.

    ``controls`` override the section's step controls (`accumulate`, `precision`, `compile`).
    Inside a torchrun worker the run is one of several processes (DDP; FSDP with ``shard``)."""
    config: TrainConfig | None = spec.graph.train
    if config is None:
        raise error(spec.graph.span, f"{spec.name} has no `train` section", f"add `train {spec.name} {{ loss ...; optimizer ... }}`")
    config = step_controls(config, controls)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
    problem = check_device(device)
    if problem:
        raise ValueError(f"device {device!r}: {problem}")
    dataset = load_data(data, spec.graph)
    splits = split(dataset, config.settings.get("validation", 0.1), test_share, config.seed)
    if len(splits.train) == 0:
        raise error(Span.nowhere(str(data)), f"the data has only {len(dataset)} rows: nothing left to train on")
    run = Path(out) if out is not None else None
    if run is not None:
        if run.exists() and not run.is_dir():
            raise error(Span.nowhere(str(run)), "exists and is not a directory; the run needs a directory")
        try:
            run.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise error(Span.nowhere(str(run)), f"cannot create the run directory: {exc.strerror or exc}") from None
    total_epochs = epochs or config.epochs
    world, device = distributed.join(device, shard)
    distributed.check_world(world, config, len(splits.train))
    quiet = quiet or not world.main
    trainer = Trainer(spec, splits, run, device, quiet, total_epochs, config, world)
    try:
        return _run(trainer, spec, dataset, splits, run, resume, total_epochs, quiet)
    finally:
        distributed.leave(world)


def step_controls(config: TrainConfig, controls: dict[str, Any]) -> TrainConfig:
    """The section with `accumulate`, `precision` and `compile` replaced where given (not None)."""
    given = {k: v for k, v in controls.items() if v is not None}
    unknown = set(given) - {"accumulate", "precision", "compile"}
    if unknown:
        raise TypeError(f"unknown step control(s): {', '.join(sorted(unknown))}")
    if "accumulate" in given and (type(given["accumulate"]) is not int or given["accumulate"] < 1):
        raise ValueError(f"accumulate must be a whole number >= 1, got {given['accumulate']!r}")
    if "precision" in given and given["precision"] not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {given['precision']!r}")
    return replace(config, **given) if given else config


def _run(trainer: Trainer, spec: Any, dataset: Dataset, splits: Splits, run: Path | None, resume: bool,
         total_epochs: int, quiet: bool) -> FitResult:
    """The run itself, once the trainer stands (every process runs this; the main one writes)."""
    config, main = trainer.config, trainer.world.main
    if resume:
        if run is None or not checkpoint.exists(run, "last"):
            raise error(Span.nowhere(str(run)), f"nothing to resume in {run}: no complete `last` checkpoint")
        trainer.restore("last")
    elif run is not None and main:  # a new run in an old directory starts over: no stale checkpoint to resume
        for tag in ("last", "best"):
            checkpoint.remove(run, tag)
        (run / "metrics.jsonl").unlink(missing_ok=True)
    distributed.barrier(trainer.world)
    es = config.early_stop
    reason, failed, interrupted = f"finished {total_epochs} epochs", False, False
    try:
        with _stop_on_ctrl_c(trainer):
            reason, failed = _epochs(trainer, splits, total_epochs, quiet, reason)
    except KeyboardInterrupt:
        interrupted = True
        if trainer.consistent and run is not None:
            trainer.save("last", "interrupted")
            reason = (f"interrupted at epoch {trainer.epoch + 1}, step {trainer.step}; saved {run / 'last'}, "
                      f"continue with --resume")
        else:
            kept = f"kept the checkpoint of epoch {trainer.epoch}" if run is not None else "nothing saved"
            reason = f"interrupted at epoch {trainer.epoch + 1}; {kept}"
    if es and es.kwargs["restore_best"]:
        if trainer.best_state is not None:
            trainer.model.load_state_dict(trainer.best_state, strict=True)
        elif run is not None and checkpoint.exists(run, "best"):  # a resumed run: best is on disk
            weights, _, _ = checkpoint.load(run, "best")
            trainer.load_weights(_with_aliases(trainer.graph, weights, str(run / "best.safetensors")))
    test = {} if interrupted else trainer.measure(splits.test, "test")
    result = FitResult(trainer.history, reason, trainer.best_epoch, test, run, trainer.model, failed, interrupted)
    if run is not None and trainer.history and main:
        _plot(trainer.history, run / "curve.png")
    if run is not None and main:
        summary = {"stop_reason": reason, "failed": failed, "interrupted": interrupted, "best_epoch": trainer.best_epoch,
                   "epochs_run": trainer.epoch, "test": test, "spec": str(spec.path), "data": dataset.origin}
        write_atomic(run / "summary.json", json.dumps(summary, indent=1, default=float).encode())
    if not quiet:
        print(reason + ("; " + "  ".join(f"{k} {v:.4g}" for k, v in test.items()) if test else ""), flush=True)
    return result


__all__ = ["FitResult", "fit"]
