"""Training at scale, proven by comparison with one process: `--nproc 2` (DDP on gloo) and
`--nproc 2 --shard` (FSDP2) against a one-process run of the same global batch, resume with
another process count, and gradient accumulation against the larger batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import flashc

# No dropout and no batchnorm: N processes then compute exactly the one-process step.
SPEC = """
model Tiny(hidden = 16) {
  input pixels: float32[B, 64]
  output logits = pixels |> linear(hidden) |> relu |> linear(10)
}

train Tiny {
  target    label: int64[B]
  loss      cross_entropy(logits, label)
  optimizer adam(lr = 0.01)
  batch     30
  epochs    3
}
"""


def flashc_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "flashc", *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "last.safetensors")


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def metrics(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One process (in this one), two processes with DDP, two with FSDP: 3 epochs each."""
    root = tmp_path_factory.mktemp("scale")
    (root / "tiny.flash").write_text(SPEC)
    spec = flashc.load(root / "tiny.flash")
    spec.fit("digits", root / "one", quiet=True)
    flashc_cli("train", "tiny.flash", "--data", "digits", "-o", "ddp", "--nproc", "2", cwd=root)
    flashc_cli("train", "tiny.flash", "--data", "digits", "-o", "fsdp", "--nproc", "2", "--shard", cwd=root)
    return {"root": root, "one": root / "one", "ddp": root / "ddp", "fsdp": root / "fsdp"}


def test_two_processes_equal_one_with_the_same_global_batch(runs):
    assert max_diff(weights(runs["ddp"]), weights(runs["one"])) <= 1e-5
    one, two = metrics(runs["one"]), metrics(runs["ddp"])
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=1e-6), key
    summary = json.loads((runs["ddp"] / "summary.json").read_text())
    assert summary["test"]["test_accuracy"] == pytest.approx(json.loads((runs["one"] / "summary.json").read_text())
                                                             ["test"]["test_accuracy"])


def test_fsdp_checkpoint_is_consolidated_and_equals_ddp(runs):
    fsdp, ddp = weights(runs["fsdp"]), weights(runs["ddp"])
    assert all(t.shape == ddp[k].shape for k, t in fsdp.items())  # full tensors, not shards
    assert max_diff(fsdp, ddp) <= 1e-5
    # the consolidated checkpoint is what one process loads
    spec = flashc.load(runs["root"] / "tiny.flash")
    model = spec.to_torch(weights=str(runs["fsdp"] / "last.safetensors"))
    assert torch.equal(model.state_dict()["linear.weight"], fsdp["linear.weight"])


def test_runs_resume_with_another_process_count(runs):
    """One process resumes the DDP run, two FSDP processes resume theirs: both equal one process throughout."""
    root = runs["root"]
    spec = flashc.load(root / "tiny.flash")
    for name in ("one", "ddp"):
        shutil.copytree(runs[name], root / f"{name}4")
        spec.fit("digits", root / f"{name}4", epochs=4, resume=True, quiet=True)
    shutil.copytree(runs["fsdp"], root / "fsdp4")
    flashc_cli("train", "--resume", "fsdp4", "--epochs", "4", "--nproc", "2", "--shard", cwd=root)
    reference = weights(root / "one4")
    assert max_diff(weights(root / "ddp4"), reference) <= 1e-5
    assert max_diff(weights(root / "fsdp4"), reference) <= 1e-5
    assert [m["epoch"] for m in metrics(root / "fsdp4")] == [1, 2, 3, 4]


def test_accumulating_four_batches_of_8_is_one_batch_of_32(tmp_path):
    spec = flashc.loads(SPEC.replace("batch     30", "batch     32").replace("epochs    3", "epochs    2"))
    big = spec.fit("digits", tmp_path / "big", quiet=True)
    small = flashc.loads(SPEC.replace("batch     30", "batch     8\n  accumulate 4").replace("epochs    3", "epochs    2"))
    assert small.train.accumulate == 4
    accumulated = small.fit("digits", tmp_path / "small", quiet=True)
    assert max_diff(weights(tmp_path / "small"), weights(tmp_path / "big")) <= 1e-5
    assert [m["steps"] for m in accumulated.history] == [m["steps"] for m in big.history]
    for a, b in zip(accumulated.history, big.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    # the command line overrides the section: --accumulate 4 on batch 8
    plain = flashc.loads(SPEC.replace("batch     30", "batch     8").replace("epochs    3", "epochs    2"))
    plain.fit("digits", tmp_path / "cli", quiet=True, accumulate=4)
    assert max_diff(weights(tmp_path / "cli"), weights(tmp_path / "big")) <= 1e-5
