"""Issue 10 in training: data checked before the first step (class ids, non-finite cells, CSV
encodings, BOMs, empty and corrupt files, each error naming the file, the array or column and
the row); train-section values and target shapes checked at `check`; `summary.json` names
the data; checkpoints, Ctrl-C, a full disk and longer resumed runs."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import flashc
from flashc.cli import main
from flashc.train.data import load_data

ROOT = Path(__file__).resolve().parent.parent
NET = """
model Net(classes = 3) {
  input x: float32[B, 4]
  output logits = x |> linear(8) |> relu |> linear(classes)
}
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec_text(*lines: str, loss: str = "cross_entropy(logits, label)", target: str = "label: int64[B]") -> str:
    body = "\n  ".join((f"target {target}", f"loss {loss}", *lines))
    return f"{NET}\ntrain Net {{\n  {body}\n}}\n"


def net(*lines: str, **kw) -> flashc.Spec:
    return flashc.loads(spec_text(*lines, **kw))


def tiny(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    label = g.integers(0, 3, n)
    return {"x": (g.normal(0, 1, (n, 4)) + label[:, None]).astype(np.float32), "label": label.astype(np.int64)}


def refused(data, *words: str, tmp_path: Path, spec: flashc.Spec | None = None) -> str:
    """Training on ``data`` fails before the run directory exists, with all ``words`` in one message."""
    spec = spec or net("optimizer sgd(lr = 0.1)")
    with pytest.raises(flashc.FlashError) as info:
        spec.fit(data, tmp_path / "run", quiet=True)
    text = str(info.value)
    for word in words:
        assert word in text, text
    assert "\n" not in text.split("  hint:")[0].strip()  # one line (and maybe a hint)
    assert not (tmp_path / "run").exists()
    return text


def write_csv(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


HEADER = ["x_0", "x_1", "x_2", "x_3", "label"]


def good_rows(n: int = 20) -> list[list]:
    d = tiny(n)
    return [[*map(float, x), int(y)] for x, y in zip(d["x"], d["label"])]


# --- item 6: class ids, non-finite cells --------------------------------------------------------------

@pytest.mark.parametrize("bad, value", [(3, "3"), (-1, "-1"), (10, "10")])
def test_class_ids_outside_the_classes(tmp_path, bad, value):
    data = tiny()
    data["label"][17] = bad
    text = refused(data, "data array `label`, row 17:", f"{value} is outside [0, 3)", "`logits` has 3 classes",
                   tmp_path=tmp_path)
    assert text.startswith("data: error:")


def test_ignore_index_is_allowed(tmp_path):
    data = tiny()
    data["label"][5] = -100
    result = net("optimizer sgd(lr = 0.1)", "epochs 1").fit(data, quiet=True)
    assert len(result.history) == 1


def test_class_ids_in_a_file_name_the_file(tmp_path):
    data = tiny()
    data["label"][3] = 7
    path = tmp_path / "d.npz"
    np.savez(path, **data)
    text = refused(str(path), "`label`, row 3: 7 is outside [0, 3)", tmp_path=tmp_path)
    assert text.startswith(f"{path}: error:")


def test_binary_targets_outside_zero_one(tmp_path):
    spec = net("optimizer sgd(lr = 0.1)", loss="binary_cross_entropy(logits, m)", target="m: float32[B, 3]")
    data = {"x": tiny()["x"], "m": np.zeros((40, 3), np.float32)}
    data["m"][9, 2] = 2.0
    refused(data, "data array `m`, row 9: 2.0 at index [9, 2] is outside [0, 1]", tmp_path=tmp_path, spec=spec)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_cells(tmp_path, value):
    data = tiny()
    data["x"][11, 2] = value
    refused(data, f"data array `x`, row 11: {value} at index [11, 2] is not a finite number", tmp_path=tmp_path)


def test_non_finite_float_labels(tmp_path):
    data = tiny()
    labels = data["label"].astype(np.float64)
    labels[4] = np.nan
    data["label"] = labels
    refused(data, "data array `label`, row 4: nan is not a finite number", tmp_path=tmp_path)


# --- item 6: CSV files ---------------------------------------------------------------------------------

def test_csv_with_a_bom_trains(tmp_path):
    path = write_csv(tmp_path / "bom.csv", HEADER, good_rows(), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    data = load_data(path, net("optimizer sgd(lr = 0.1)").graph)
    assert data.arrays["x"].shape == (20, 4) and data.arrays["label"].shape == (20,)


def test_latin1_csv_is_a_clear_encoding_error(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("x_0,x_1,x_2,x_3,label\n1,2,3,4,0\n1,2,3,4,1 # caf\xe9\n".encode("latin-1"))
    refused(str(path), f"{path}: error: line 3: the file is not UTF-8 text (byte 0xe9)", "save the CSV as UTF-8",
            tmp_path=tmp_path)


def test_header_only_csv(tmp_path):
    path = write_csv(tmp_path / "h.csv", HEADER, [])
    refused(str(path), f"{path}: error: the CSV file has a header but no data rows", tmp_path=tmp_path)


@pytest.mark.parametrize("suffix, words", [(".csv", "the data file is empty"), (".npz", "the data file is empty"),
                                           (".safetensors", "the data file is empty")])
def test_empty_files(tmp_path, suffix, words):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    refused(str(path), f"{path}: error: {words}", tmp_path=tmp_path)


def test_csv_cells_name_line_and_column(tmp_path):
    rows = good_rows()
    rows[6][2] = "nan"
    path = write_csv(tmp_path / "n.csv", HEADER, rows)
    refused(str(path), f"{path}: error: line 8, column `x_2`: nan is not a finite number", tmp_path=tmp_path)
    rows[6][2] = "abc"
    write_csv(path, HEADER, rows)
    refused(str(path), "line 8, column `x_2`: 'abc' is not a number", tmp_path=tmp_path)
    rows[6] = rows[6][:3]
    write_csv(path, HEADER, rows)
    refused(str(path), "line 8 has 3 cells, the header has 5", tmp_path=tmp_path)


def test_csv_label_errors_point_at_the_line(tmp_path):
    rows = good_rows()
    rows[2][4] = 5
    path = write_csv(tmp_path / "l.csv", HEADER, rows)
    refused(str(path), f"{path}: error: data array `label`, line 4: 5 is outside [0, 3)", tmp_path=tmp_path)


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "not a readable .npz file"),
    (lambda p: (np.savez(p, **tiny()), p.write_bytes(p.read_bytes()[:300])), "not a readable .npz file"),
    (lambda p: np.savez(p, x=np.array([1, "a", None], dtype=object), label=np.zeros(3)), "holds Python objects"),
])
def test_corrupt_npz(tmp_path, make, words):
    path = tmp_path / "d.npz"
    make(path)
    text = refused(str(path), words, tmp_path=tmp_path)
    assert text.startswith(str(path))


def test_cli_data_errors_are_one_clean_line(tmp_path, capsys):
    spec = tmp_path / "net.flash"
    spec.write_text(spec_text("optimizer sgd(lr = 0.1)"))
    rows = good_rows()
    rows[0][4] = 3
    data = write_csv(tmp_path / "d.csv", HEADER, rows)
    assert main(["train", str(spec), "--data", str(data), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{data}: error: data array `label`, line 2: 3 is outside [0, 3)")
    assert "Traceback" not in err and not (tmp_path / "run").exists()


# --- item 8: the train section at `check` --------------------------------------------------------------

@pytest.mark.parametrize("line, words", [
    ("optimizer sgd(lr = -1)", "`sgd` lr must be > 0, got -1.0"),
    ("optimizer sgd(lr = 0)", "`sgd` lr must be > 0, got 0.0"),
    ("optimizer adam(betas = (2, 3, 4))", "`adam` betas must be two numbers from 0 up to (not including) 1"),
    ("optimizer adam(betas = (0.9, 1.0))", "`adam` betas must be two numbers"),
    ("optimizer sgd(lr = 0.1, momentum = -0.5)", "`sgd` momentum must be >= 0"),
    ("optimizer sgd(lr = 1e308 * 10)", "finite"),  # refused by the evaluator or the range check
    ("optimizer sgd(lr = 0.1)\n  schedule step(step_size = 0)", "`step` step_size must be >= 1, got 0"),
    ("optimizer sgd(lr = 0.1)\n  schedule reduce_on_plateau(factor = 1.5)", "`reduce_on_plateau` factor must be between 0"),
    ("optimizer sgd(lr = 0.1)\n  adversarial fgsm(epsilon = -0.1)", "`fgsm` epsilon must be > 0"),
    ("optimizer sgd(lr = 0.1)\n  regularize l2(-1e-4) on \"*.weight\"", "`l2` strength must be >= 0"),
    ("optimizer sgd(lr = 0.1)\n  clip_grad 1e308 * 10", "finite"),
])
def test_train_values_out_of_range_fail_check(line, words):
    with pytest.raises(flashc.FlashError) as info:
        net(line)
    assert words in str(info.value)
    assert str(info.value).startswith("<string>:")  # a spec position: file:line:col


@pytest.mark.parametrize("loss, target, words", [
    ("cross_entropy(logits, label)", "label: int64[B, 2]", "the ids need the logits' shape without its last axis"),
    ("cross_entropy(logits, label)", "label: float32[B]", "takes class ids, but `label` is float32[B]"),
    ("cross_entropy(logits, label, weight = (1.0, 2.0))", "label: int64[B]", "weight has 2 values for 3 classes"),
    ("hinge(logits, label)", "label: int64[B, 3]", "the ids need the logits' shape"),
    ("mse(logits, t)", "t: float32[B, 4]", "their shapes cannot match"),
    ("binary_cross_entropy(logits, t)", "t: float32[B]", "their shapes cannot match"),
])
def test_target_shapes_that_cannot_match_fail_check(loss, target, words):
    with pytest.raises(flashc.FlashError) as info:
        net("optimizer sgd(lr = 0.1)", loss=loss, target=target)
    assert words in str(info.value)


def test_matching_targets_still_check():
    net("optimizer sgd(lr = 0.1)", loss="mse(logits, t)", target="t: float32[B, 3]")
    net("optimizer sgd(lr = 0.1)", loss="cross_entropy(logits, label, weight = (1.0, 2.0, 0.5))")


def test_summary_names_the_data(tmp_path, capsys):
    spec = tmp_path / "net.flash"
    spec.write_text(spec_text("optimizer sgd(lr = 0.1)", "epochs 1"))
    assert main(["train", str(spec), "--data", "blobs", "-o", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["data"] == "blobs"


def test_fit_refuses_bad_epochs_and_devices():
    spec = net("optimizer sgd(lr = 0.1)")
    for epochs in (0, -3):
        with pytest.raises(ValueError, match="epochs must be a whole number >= 1"):
            spec.fit(tiny(), epochs=epochs, quiet=True)
    with pytest.raises(ValueError, match="unknown device"):
        spec.fit(tiny(), device="tpu9", quiet=True)


def test_quickstart_header_says_what_it_runs():
    path = ROOT / "examples" / "quickstart.py"
    source = path.read_text()
    tree = ast.parse(source)
    epochs = next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "EPOCHS")
    assert f"{epochs} epochs" in ast.get_docstring(tree)
    assert "epochs=EPOCHS" in source


# --- item 7: checkpoints, Ctrl-C, full disk, longer resumed runs ---------------------------------------

FAULT_SPEC = """
model Net(classes = 3) {
  input x: float32[B, 4]
  output logits = x |> linear(16) |> relu |> dropout(0.3) |> linear(classes)
}
train Net {
  target label: int64[B]
  loss cross_entropy(logits, label)
  optimizer adam(lr = 0.01)
  schedule warmup_cosine(warmup = 5)
  batch 50
  epochs 3
  early_stop patience = 5, restore_best
}
"""
COMPARED = ["last/weights.safetensors", "last/state.safetensors", "last/info.json", "last/manifest.json",
            "best/weights.safetensors", "best/state.safetensors", "best/info.json", "metrics.jsonl", "metrics.csv",
            "summary.json", "run.json"]


def test_killed_and_interrupted_runs_resume_bit_identical(tmp_path):
    """20 seeded faults (SIGKILL between and inside checkpoint files, between the renames that commit
    them, mid-step, before a metrics line; Ctrl-C mid-epoch and mid-save), each followed by
    `--resume` until the run finishes: every run ends byte-identical to the uninterrupted one."""
    spec = tmp_path / "net.flash"
    spec.write_text(FAULT_SPEC)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"work": str(tmp_path), "spec": str(spec), "data": "blobs", "seed": 1, "trials": 20}))
    subprocess.run([sys.executable, str(ROOT / "tests" / "faults.py"), str(plan)], check=True, timeout=600, cwd=ROOT)
    results = json.loads(plan.with_suffix(".result.json").read_text())
    assert results["reference"]["code"] == 0
    outcomes = []
    for t, trial in enumerate(results["trials"]):
        assert trial[-1]["fault"] is None and trial[-1]["code"] == 0, trial
        for run in trial[:-1]:
            outcomes.append((run["fault"], run.get("signal"), run.get("code")))
            if run["fault"].startswith("kill"):
                assert run.get("signal") == signal.SIGKILL or run.get("code") == 0, run  # 0: fault not reached
            else:
                assert run.get("code") in (130, 0), run
        for name in COMPARED:
            assert (tmp_path / f"trial{t}" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), \
                (t, name, trial)
        leftovers = [p.name for p in (tmp_path / f"trial{t}").iterdir() if p.name.startswith(".")]
        assert leftovers == [], leftovers
    kills = [kind for kind, sig, _ in outcomes if sig == signal.SIGKILL]
    ctrl_c = [kind for kind, _, code in outcomes if code == 130]
    assert len(kills) >= 12 and {"kill_write", "kill_write_half", "kill_step", "kill_log"} <= set(kills), outcomes
    assert {"sigint_step", "sigint_write"} <= set(ctrl_c), outcomes


def test_ctrl_c_saves_the_position_and_exits_130(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "net.flash"
    spec.write_text(FAULT_SPEC)
    from flashc.train.optim import Schedule

    real, calls = Schedule.after_step, []

    def press_ctrl_c_at_step_13(self):
        real(self)
        calls.append(1)
        if len(calls) == 13:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Schedule, "after_step", press_ctrl_c_at_step_13)
    run = tmp_path / "run"
    assert main(["train", str(spec), "--data", "blobs", "-o", str(run)]) == 130
    assert f"continue with: flashc train --resume {run}" in capsys.readouterr().err
    info = json.loads((run / "last.json").read_text())
    assert (info["epoch"], info["step"], info["reason"]) == (1, 3, "interrupted")  # 10 steps an epoch
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True
    monkeypatch.setattr(Schedule, "after_step", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert main(["train", str(spec), "--data", "blobs", "-o", str(tmp_path / "straight")]) == 0
    for name in COMPARED[:-1]:
        assert (run / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


def test_full_disk_during_training_is_a_clean_error(tmp_path):
    spec = tmp_path / "net.flash"
    spec.write_text(FAULT_SPEC)
    run = tmp_path / "run"

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))  # run.json fits, a checkpoint does not

    r = subprocess.run([sys.executable, "-m", "flashc.cli", "train", str(spec), "--data", "blobs", "-o", str(run)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, preexec_fn=cap,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert re.search(rf"^{re.escape(str(run))}/(best|last): error: cannot write: File too large", r.stderr, re.M), r.stderr
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]  # no partial checkpoint, no temporary folder


def test_a_tampered_checkpoint_is_refused_at_resume(tmp_path):
    spec = net("optimizer sgd(lr = 0.1)", "epochs 2")
    spec.fit(tiny(), tmp_path, epochs=1, quiet=True)
    weights = tmp_path / "last" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(flashc.FlashError, match="does not match its manifest"):
        spec.fit(tiny(), tmp_path, resume=True, quiet=True)


def test_checkpoint_paths_are_links_into_the_committed_set(tmp_path):
    net("optimizer sgd(lr = 0.1)", "epochs 1").fit(tiny(), tmp_path, quiet=True)
    for tag in ("best", "last"):
        for outer, inner in ((f"{tag}.safetensors", "weights.safetensors"), (f"{tag}.json", "info.json"),
                             (f"{tag}.state.safetensors", "state.safetensors")):
            assert (tmp_path / outer).is_symlink() and os.readlink(tmp_path / outer) == f"{tag}/{inner}"
        manifest = json.loads((tmp_path / tag / "manifest.json").read_text())
        assert set(manifest) == {"weights.safetensors", "state.safetensors", "info.json"}


def test_more_epochs_on_resume_continue_the_lr_curve(tmp_path):
    """`--resume --epochs 81` after 40 epochs of a cosine schedule: the horizon moves to 81, and the
    lr from epoch 41 on is what a run planned for 81 epochs uses; it falls to the end, no restart."""
    spec = net("optimizer sgd(lr = 0.1)", "schedule cosine", "batch full", "epochs 40")
    first = spec.fit(tiny(), tmp_path, quiet=True)
    lrs40 = [h["lr"] for h in first.history]
    assert lrs40[-1] < 0.01 * lrs40[0]  # the 40-epoch curve ran down to (almost) zero
    resumed = spec.fit(tiny(), tmp_path, epochs=81, resume=True, quiet=True)
    lrs = [h["lr"] for h in resumed.history]
    assert len(lrs) == 81 and lrs[:40] == lrs40
    straight = [h["lr"] for h in spec.fit(tiny(), epochs=81, quiet=True).history]
    assert lrs[40:] == pytest.approx(straight[40:], rel=1e-12, abs=1e-15)
    tail = lrs[40:]
    assert all(a > b for a, b in zip(tail, tail[1:])), tail  # falling all the way: never climbs back
    assert tail[0] < 0.6 * lrs40[0] and tail[-1] < 1e-3 * lrs40[0]


def test_a_new_run_in_an_old_directory_starts_over(tmp_path):
    spec = net("optimizer sgd(lr = 0.1)", "epochs 2")
    spec.fit(tiny(), tmp_path, quiet=True)
    assert json.loads((tmp_path / "last.json").read_text())["epoch"] == 2

    def killed_before_the_first_checkpoint(*args, **kwargs):
        raise RuntimeError("killed")

    from flashc.train import loop

    real = loop.Trainer.train_epoch
    loop.Trainer.train_epoch = killed_before_the_first_checkpoint
    try:
        with pytest.raises(RuntimeError):
            spec.fit(tiny(), tmp_path, quiet=True)
    finally:
        loop.Trainer.train_epoch = real
    assert not (tmp_path / "last").exists() and not (tmp_path / "last.json").is_symlink()  # nothing stale to resume
    with pytest.raises(flashc.FlashError, match="nothing to resume"):
        spec.fit(tiny(), tmp_path, resume=True, quiet=True)


def test_fit_into_a_file_is_a_clean_error(tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep")
    with pytest.raises(flashc.FlashError, match="exists and is not a directory"):
        net("optimizer sgd(lr = 0.1)").fit(tiny(), existing, quiet=True)
    assert existing.read_text() == "keep"
