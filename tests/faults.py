"""Fault injection for `flashc train`: kill a run at seeded random points, resume it, repeat.

Run as a script by tests/test_hardening_train.py: ``python tests/faults.py PLAN.json``. It
imports torch and flashc once, then forks one child per training run (a fork server: each
child is a real process, killed by real signals, without paying for imports again). A child
runs ``flashc.cli.main`` with one fault armed by patching a seam of the trainer:

- ``kill_write K`` / ``kill_write_half K``: SIGKILL before (or halfway through) the K-th
  checkpoint file write, i.e. between the files of one checkpoint or inside one;
- ``kill_rename K``: SIGKILL before the K-th rename that commits a checkpoint (between
  setting the old set aside and moving the new one into place, for the second of a pair);
- ``kill_step K``: SIGKILL right after the K-th optimizer step (before the schedule steps);
- ``kill_log K``: SIGKILL before the K-th metrics line is appended (after the checkpoint);
- ``sigint_step K`` / ``sigint_write K``: Ctrl-C (SIGINT) after the K-th step or during the
  K-th checkpoint write; the run must save where it stands and exit 130.

The first run of a trial trains from scratch; every later one resumes (or starts again when
the kill came before the first checkpoint), until a run finishes. The plan's ``reference``
run trains without faults and counts how often each seam is reached, so the faults of the
trials land inside the run. Results (exit codes, signals, counts) go to ``PLAN.result.json``;
the test compares the run directories byte for byte.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import matplotlib
import torch
import torch._dynamo  # noqa: F401  (imported lazily by torch.optim: import once here, not in every child)

import flashc.cli
from flashc.train import checkpoint
from flashc.train.loop import Trainer
from flashc.train.optim import Schedule

SEAMS = {"write": (checkpoint, "_write_file"), "rename": (checkpoint, "_rename"),
         "step": (Schedule, "after_step"), "log": (Trainer, "log")}
KINDS = {"kill_write": "write", "kill_write_half": "write", "kill_rename": "rename", "kill_step": "step",
         "kill_log": "log", "sigint_step": "step", "sigint_write": "write"}


def arm(kind: str | None, at: int, counts: dict[str, int]) -> None:
    """Wrap every seam to count its calls; fire ``kind`` at call number ``at`` of its seam."""
    for seam, (owner, attr) in SEAMS.items():
        real = getattr(owner, attr)

        def wrapped(*args: Any, _real: Any = real, _seam: str = seam) -> Any:
            counts[_seam] += 1
            hit = kind is not None and KINDS[kind] == _seam and counts[_seam] == at
            if hit and kind == "kill_write_half":
                path, data = args
                with open(path, "wb") as fh:
                    fh.write(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            if hit and kind.startswith("kill") and kind != "kill_step":
                os.kill(os.getpid(), signal.SIGKILL)
            result = _real(*args)
            if hit and kind == "kill_step":
                os.kill(os.getpid(), signal.SIGKILL)
            if hit and kind.startswith("sigint"):
                os.kill(os.getpid(), signal.SIGINT)
            return result

        setattr(owner, attr, wrapped)


def child(argv: list[str], kind: str | None, at: int, counts_file: Path) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    torch.set_num_threads(1)
    counts = dict.fromkeys(SEAMS, 0)
    arm(kind, at, counts)
    try:
        code = flashc.cli.main(argv)
    except BaseException:
        code = 99
    counts_file.write_text(json.dumps(counts))
    os._exit(code)


def run_child(argv: list[str], kind: str | None, at: int, counts_file: Path) -> dict[str, Any]:
    pid = os.fork()
    if pid == 0:
        child(argv, kind, at, counts_file)
    _, status = os.waitpid(pid, 0)
    out: dict[str, Any] = {"argv": argv, "fault": kind, "at": at}
    if os.WIFSIGNALED(status):
        out["signal"] = os.WTERMSIG(status)
    else:
        out["code"] = os.WEXITSTATUS(status)
    return out


def main(plan_file: str) -> int:
    plan = json.loads(Path(plan_file).read_text())
    matplotlib.use("Agg")
    importlib.import_module("matplotlib.pyplot")  # the run's curve.png: imported once here, not in every child

    work = Path(plan["work"])
    fresh = lambda run: ["train", plan["spec"], "--data", plan["data"], "-o", str(run)]  # noqa: E731
    counts_file = work / "counts.json"
    results: dict[str, Any] = {"reference": run_child(fresh(work / "reference"), None, 0, counts_file)}
    counts = json.loads(counts_file.read_text())
    results["counts"] = counts
    rng = random.Random(plan["seed"])
    kinds = sorted(KINDS)
    results["trials"] = []
    for t in range(plan["trials"]):
        run = work / f"trial{t}"
        faults = [rng.choice(kinds) for _ in range(rng.choice((1, 1, 2)))]
        log = []
        for i in range(len(faults) + 4):  # each fault, then resumes until a run finishes
            kind = faults[i] if i < len(faults) else None
            at = rng.randint(1, counts[KINDS[kind]]) if kind else 0
            started = (run / "last" / "manifest.json").is_file()
            argv = ["train", "--resume", str(run)] if started else fresh(run)
            log.append(run_child(argv, kind, at, counts_file))
            if kind is None and log[-1].get("code") == 0:
                break
        results["trials"].append(log)
    Path(plan_file).with_suffix(".result.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
