"""Training at scale, proven by comparison with one process: `--nproc 2` (DDP on gloo) and
`--nproc 2 --shard` (FSDP2) against a one-process run of the same global batch, resume with
another process count, and gradient accumulation against the larger batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import flashc
from flashc.train.data import load_data

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
    digits = load_data("digits", spec.graph)  # saved as a file: the workers need not import scikit-learn
    np.savez(root / "digits.npz", **digits.arrays)
    spec.fit(digits, root / "one", quiet=True)
    flashc_cli("train", "tiny.flash", "--data", "digits.npz", "-o", "ddp", "--nproc", "2", cwd=root)
    flashc_cli("train", "tiny.flash", "--data", "digits.npz", "-o", "fsdp", "--nproc", "2", "--shard", cwd=root)
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
        spec.fit(str(root / "digits.npz"), root / f"{name}4", epochs=4, resume=True, quiet=True)
    shutil.copytree(runs["fsdp"], root / "fsdp4")
    # torch's launcher itself, as on several machines (torchrun ... -m flashc train ...)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                           "flashc", "train", "--resume", "fsdp4", "--epochs", "4", "--shard"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
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


# --- step controls and phases, checked by `flashc check` -------------------------------------------
HEAD = "model M() {\n  input x: float32[B, 4]\n  input z: float32[B, 2]\n  output y = x |> linear(3)\n}\ntrain M {\n"


def check_error(body: str) -> tuple[int, int, str, str | None]:
    with pytest.raises(flashc.FlashError) as info:
        flashc.loads(HEAD + "  target label: int64[B]\n" + body + "}\n")
    d = info.value.diagnostics[0]
    return d.span.line, d.span.col, d.message, d.hint


@pytest.mark.parametrize("body, where, message, hint", [
    ("  loss cross_entropy(y, label)\n  optimizer adam\n  precision bf61\n", (10, 13), "unknown precision `bf61`",
     "did you mean `bf16`?"),
    ("  loss cross_entropy(y, label)\n  optimizer adam\n  accumulate 0\n", (10, 14),
     "`accumulate` must be a whole number >= 1, got 0", None),
    ("  loss cross_entropy(y, label)\n  optimizer adam\n  compile 1\n", (10, 11), "`compile` is true or false, got 1",
     None),
    ("  loss cross_entropy(y, label)\n  optimizer adam\n  noise zz\n", (10, 9),
     "`noise` fills model inputs; `zz` is not one", "did you mean `z`?"),
    ("  loss mean(y)\n  optimizer adam\n  noise label\n", (10, 9), "`noise` fills model inputs; `label` is not one",
     "inputs: x, z"),
    ("  loss y\n  optimizer adam\n", (8, 8), "the loss must be one number, but this is float32[B, 3]",
     "reduce it: `mean(...)` or `sum(...)`"),
    ("  loss cross_entropy(y, arange(C))\n  optimizer adam\n", (8, 32), "undefined name `C`", None),
    ("  loss cross_entropy(y, ones_like(label))\n  optimizer adam\n", (8, 8),
     "`cross_entropy` takes class ids, but the expression is float32[B]", None),
    ("  loss mse(y, ones_like(z))\n  optimizer adam\n", (8, 8),
     "`mse` compares `y` float32[B, 3] with the expression float32[B, 2]: their shapes cannot match", None),
    ("  phase a {\n    loss mean(y)\n    optimizer adam\n    params \"nope.*\"\n  }\n", (11, 5),
     "'nope.*' matches no parameter", "parameters look like 'linear.weight'"),
    ("  phase a {\n    loss mean(y)\n  }\n", (8, 3), "phase `a` has no `optimizer`", None),
    ("  phase a {\n    loss mean(y)\n    optimizer adam\n    batch 3\n  }\n", (11, 5),
     "a phase holds loss, optimizer, schedule, params; this belongs in the train section", None),
    ("  loss mean(y)\n  phase a {\n    loss mean(y)\n    optimizer adam\n  }\n", (8, 3),
     "with phases, `loss` belongs inside each phase", None),
])
def test_step_controls_and_phases_are_checked(body, where, message, hint):
    line, col, got, got_hint = check_error(body)
    assert (line, col, got, got_hint) == (*where, message, hint)


def test_phases_train_their_own_parameters_with_their_own_optimizers(tmp_path):
    """Two phases: each optimizer moves only its parameters; checkpoints hold both states and resume exactly."""
    text = """
model Two() {
  input x: float32[B, 4]
  input z: float32[B, 3]
  a = linear(2)
  b = linear(2)
  output u = x |> a
  output v = z |> b
}

train Two {
  target t: float32[B, 2]
  noise z
  phase first {
    loss mse(u, t)
    optimizer sgd(lr = 0.1)
    params "a.*"
  }
  phase second {
    loss mean(square(v - detach(u)))
    optimizer adam(lr = 0.01)
    schedule step(step_size = 1, gamma = 0.5)
    params "b.*"
  }
  batch 16
  epochs 2
}
"""
    spec = flashc.loads(text)
    assert [ph.name for ph in spec.train.phases] == ["first", "second"]
    assert spec.train.phases[1].parameters == ("b.weight", "b.bias")
    rng = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(64, 4, generator=rng).numpy(), "t": torch.randn(64, 2, generator=rng).numpy()}
    start = spec.to_torch(seed=0).state_dict()
    result = spec.fit(data, tmp_path / "run", quiet=True)
    after = result.model.state_dict()
    assert not torch.equal(after["a.weight"], start["a.weight"]) and not torch.equal(after["b.weight"], start["b.weight"])
    last = result.history[-1]
    assert {"train_first_loss", "train_second_loss"} <= last.keys()
    assert last["train_loss"] == pytest.approx(last["train_first_loss"] + last["train_second_loss"])
    assert last["lr"] == pytest.approx(0.1)  # the first phase's lr; the second's schedule halves its own
    # resume from epoch 1 with both optimizers and schedules: the same weights as straight through
    shutil.copytree(tmp_path / "run", tmp_path / "again")
    (tmp_path / "one").mkdir()
    spec.fit(data, tmp_path / "one", epochs=1, quiet=True)
    spec.fit(data, tmp_path / "one", epochs=2, resume=True, quiet=True)
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "run")) == 0.0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(tmp_path, precision):
    spec = flashc.loads(SPEC.replace("epochs    3", "epochs    2"))
    full = spec.fit("digits", tmp_path / "fp32", quiet=True)
    mixed = spec.fit("digits", tmp_path / precision, quiet=True, precision=precision)
    assert mixed.history[-1]["val_accuracy"] >= full.history[-1]["val_accuracy"] - 0.05
    assert mixed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=0.1)
    info = json.loads((tmp_path / precision / "last.json").read_text())
    assert ("scalers" in info) == (precision == "fp16")  # the fp16 gradient scaler is checkpointed


def test_compiled_training_equals_eager(tmp_path):
    spec = flashc.loads(SPEC.replace("epochs    3", "epochs    1"))
    spec.fit("digits", tmp_path / "eager", quiet=True)
    spec.fit("digits", tmp_path / "compiled", quiet=True, compile=True)
    assert max_diff(weights(tmp_path / "compiled"), weights(tmp_path / "eager")) <= 1e-4
