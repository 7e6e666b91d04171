"""Issue 10 at the command line: every failure a user, a file or the file system can cause is
one clear line and exit 1 (input) or 2 (usage), never a traceback; outputs never clobber an
input and a failed write leaves the previous output intact; a closed stdout is a quiet exit;
a bug is one line asking for a report, with the traceback behind `--debug`."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flashc.cli import main

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "specs" / "lenet5.flash"
TINY = "model Tiny() {\n  input x: float32[B, 4]\n  output y = x |> linear(3)\n}\n"
TRAIN = TINY.replace("model Tiny", "model Net") + """
train Net {
  target label: int64[B]
  loss cross_entropy(y, label)
  optimizer sgd(lr = 0.1)
  batch 50
  epochs 2
}
"""


def cli(*args: str | Path, limit: int | None = None, **kw) -> subprocess.CompletedProcess:
    """`python -m flashc.cli ARGS` in a fresh interpreter; ``limit`` caps the size of any file it writes."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "flashc.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=env, preexec_fn=cap if limit else None, **kw)


def run_main(capsys, *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def clean(err: str) -> None:
    """One diagnostic, no traceback, no made-up `:1:1` position."""
    assert "Traceback" not in err and ":1:1:" not in err, err


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "lenet5.onnx"
    assert main(["compile", str(LENET), "--target", "onnx", "-o", str(out)]) == 0
    return out


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    path = tmp_path / "tiny.flash"
    path.write_text(TINY)
    return path


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write in (root ignores the mode bits, so it also gets the immutable flag)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "m.onnx").write_text("old output")
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):
        immutable = shutil.which("chattr") is not None and subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            folder.chmod(0o755)
            pytest.skip("cannot make a folder read-only for this user")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


# --- item 5: outputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["onnx", "torch"])
def test_output_that_is_a_folder(tmp_path, tiny_spec, capsys, target):
    rc, out, err = run_main(capsys, "compile", tiny_spec, "--target", target, "-o", tmp_path)
    assert rc == 1 and out == ""
    assert err.startswith(f"{tmp_path}: error: is a directory")
    clean(err)


def test_run_output_that_is_a_folder(lenet_onnx, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 32, 32), np.float32))
    rc, _, err = run_main(capsys, "run", lenet_onnx, "--input", x, "-o", tmp_path)
    assert rc == 1 and err.startswith(f"{tmp_path}: error: is a directory")


@pytest.mark.parametrize("target", ["onnx", "torch"])
def test_missing_output_folder_is_a_usage_error(tmp_path, tiny_spec, capsys, target):
    out = tmp_path / "missing" / "m.out"
    rc, _, err = run_main(capsys, "compile", tiny_spec, "--target", target, "-o", out)
    assert rc == 2
    assert err.startswith("flashc compile: error: the output folder") and "does not exist" in err
    clean(err)
    assert not (tmp_path / "missing").exists()


def test_read_only_folder(read_only, tiny_spec):
    r = cli("compile", tiny_spec, "--target", "onnx", "-o", read_only / "m.onnx")
    assert r.returncode == 1
    assert r.stderr.startswith(f"{read_only / 'm.onnx'}: error: cannot write")
    clean(r.stderr)
    assert (read_only / "m.onnx").read_text() == "old output"


@pytest.mark.parametrize("target, name, limit", [("onnx", "m.onnx", 4096), ("torch", "m.py", 256)])
def test_full_disk_keeps_the_previous_output(tmp_path, target, name, limit):
    out = tmp_path / name
    out.write_text("old output")
    r = cli("compile", LENET, "--target", target, "-o", out, limit=limit)  # lenet5: ~250 kB of weights, ~2 kB of source
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"{out}: error: cannot write: File too large")
    assert "ulimit -f" in r.stderr
    clean(r.stderr)
    assert out.read_text() == "old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


@pytest.mark.parametrize("target", ["onnx", "torch"])
def test_output_equal_to_the_spec_is_refused(tmp_path, target, capsys):
    spec = tmp_path / "tiny.flash"
    spec.write_text(TINY)
    for spelling in (spec, tmp_path / "." / "tiny.flash", tmp_path / "sub" / ".." / "tiny.flash"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        rc, _, err = run_main(capsys, "compile", spec, "--target", target, "-o", spelling)
        assert rc == 2 and "is the spec" in err and "refusing to overwrite" in err, err
        assert spec.read_text() == TINY
    link = tmp_path / "link.flash"
    link.symlink_to(spec)
    rc, _, err = run_main(capsys, "compile", link, "--target", target, "-o", spec)
    assert rc == 2 and spec.read_text() == TINY


def test_output_equal_to_the_weights_is_refused(tmp_path, tiny_spec, capsys):
    from safetensors.numpy import save_file

    import flashc

    weights = tmp_path / "w.safetensors"
    save_file(flashc.load(tiny_spec).init_weights(), str(weights))
    before = weights.read_bytes()
    rc, _, err = run_main(capsys, "compile", tiny_spec, "--target", "onnx", "--weights", weights, "-o", weights)
    assert rc == 2 and "is the weights file" in err
    assert weights.read_bytes() == before


def test_run_output_equal_to_an_input_is_refused(lenet_onnx, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 32, 32), np.float32))
    model_bytes, x_bytes = lenet_onnx.read_bytes(), x.read_bytes()
    for target, role in ((lenet_onnx, "model"), (x, "input file")):
        rc, out, err = run_main(capsys, "run", lenet_onnx, "--input", f"image={x}", "-o", target)
        assert rc == 2 and f"is the {role}" in err and out == ""
    assert lenet_onnx.read_bytes() == model_bytes and x.read_bytes() == x_bytes


def test_train_output_that_is_a_file(tmp_path, capsys):
    spec = tmp_path / "net.flash"
    spec.write_text(TRAIN)
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    rc, _, err = run_main(capsys, "train", spec, "--data", "blobs", "-o", existing)
    assert rc == 1 and err.startswith(f"{existing}: error: exists and is not a directory")
    assert existing.read_text() == "keep me"
    rc, _, err = run_main(capsys, "train", spec, "--data", "blobs", "-o", spec)
    assert rc == 2 and "is the spec" in err and spec.read_text() == TRAIN


# --- item 5: run --input files ------------------------------------------------------------------------

def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _huge_header() -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 1, 32, 32)})
    return buf.getvalue() + bytes(64)


def _object_npz() -> bytes:
    """An .npz whose array is pickled Python objects (as np.savez writes them)."""
    buf = io.BytesIO()
    np.savez(buf, image=np.array([1, "a", None], dtype=object))
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _bad_crc() -> bytes:
    data = bytearray(_npz_bytes(image=np.ones((1, 1, 32, 32), np.float32)))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[start] ^= 0xFF  # one flipped data byte: the member's CRC no longer matches
    return bytes(data)


BAD_INPUTS = {
    "strings": (".npy", lambda: _npy(np.array([["a", "b"]])), "holds strings"),
    "structured": (".npy", lambda: _npy(np.zeros((1,), dtype=[("a", "f4"), ("b", "i4")])), "holds structured records"),
    "complex": (".npy", lambda: _npy(np.zeros((1, 1, 32, 32), np.complex64)), "imaginary parts would be lost"),
    "truncated-npz": (".npz", lambda: _npz_bytes(image=np.zeros((1, 1, 32, 32), np.float32))[:700],
                      "not a readable .npz file"),
    "object-npz": (".npz", _object_npz, "holds Python objects"),
    "huge-header": (".npy", _huge_header, "the header promises shape [1000000000000, 1, 32, 32]"),
    "truncated-npy": (".npy", lambda: _npy(np.zeros((2, 1, 32, 32), np.float32))[:-100], "the header promises"),
    "empty": (".npy", lambda: b"", "the file is empty"),
    "bad-crc": (".npz", _bad_crc, "damaged"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_files_are_clean_errors(lenet_onnx, tmp_path, capsys, case):
    suffix, make, words = BAD_INPUTS[case]
    path = tmp_path / f"x{suffix}"
    path.write_bytes(make())
    rc, out, err = run_main(capsys, "run", lenet_onnx, "--input", path)
    assert rc == 1 and out == ""
    assert err.startswith(f"{path}"), err
    assert ": error: " in err.splitlines()[0] and words in err, err
    clean(err)


def test_huge_header_is_refused_before_allocating(lenet_onnx, tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(_huge_header())
    r = cli("run", lenet_onnx, "--input", path)
    assert r.returncode == 1 and "promises" in r.stderr
    clean(r.stderr)


def test_an_input_name_the_model_lacks(lenet_onnx, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 32, 32), np.float32))
    rc, _, err = run_main(capsys, "run", lenet_onnx, "--input", f"foo={x}")
    assert rc == 2
    assert "`foo` is not an input of the model; its inputs are: image" in err
    npz = tmp_path / "x.npz"
    np.savez(npz, foo=np.zeros((1, 1, 32, 32), np.float32))
    rc, _, err = run_main(capsys, "run", lenet_onnx, "--input", npz)
    assert rc == 2 and "holds array `foo`, which is not an input" in err and "image" in err


def test_onnxruntime_shape_error_names_the_model_without_a_position(lenet_onnx, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 31, 31), np.float32))
    rc, out, err = run_main(capsys, "run", lenet_onnx, "--input", x)
    assert rc == 1 and out == ""
    assert err.startswith(f"{lenet_onnx}: error: onnxruntime failed:")
    assert len(err.strip().splitlines()) == 1  # onnxruntime's multi-line message folded into one line
    clean(err)


# --- item 8: values on the command line ---------------------------------------------------------------

def test_unsupported_opset_is_a_usage_error(tmp_path, tiny_spec, capsys):
    out = tmp_path / "m.onnx"
    rc, _, err = run_main(capsys, "compile", tiny_spec, "--target", "onnx", "--opset", "5", "-o", out)
    assert rc == 2 and err.startswith("flashc compile: error: --opset 5 is not supported; use 17 to")
    clean(err)
    assert not out.exists()


def test_negative_seed_is_a_usage_error(tmp_path, tiny_spec, capsys):
    rc, _, err = run_main(capsys, "compile", tiny_spec, "--target", "onnx", "--seed", "-1", "-o", tmp_path / "m.onnx")
    assert rc == 2 and "--seed must be a whole number >= 0, got -1" in err


@pytest.fixture
def train_spec(tmp_path) -> Path:
    path = tmp_path / "net.flash"
    path.write_text(TRAIN)
    return path


@pytest.mark.parametrize("epochs", ["-3", "0", "two"])
def test_epochs_must_be_positive(train_spec, tmp_path, capsys, epochs):
    with pytest.raises(SystemExit) as info:
        main(["train", str(train_spec), "--data", "blobs", "-o", str(tmp_path / "r"), "--epochs", epochs])
    assert info.value.code == 2
    assert "argument --epochs: expected a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_device_is_a_usage_error(train_spec, tmp_path, capsys):
    rc, _, err = run_main(capsys, "train", train_spec, "--data", "blobs", "-o", tmp_path / "r", "--device", "tpu9")
    assert rc == 2 and err.startswith("flashc train: error: --device tpu9: unknown device")
    clean(err)
    assert not (tmp_path / "r").exists()


def test_cuda_without_cuda_is_a_usage_error(train_spec, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, _, err = run_main(capsys, "train", train_spec, "--data", "blobs", "-o", tmp_path / "r", "--device", "cuda")
    assert rc == 2 and "--device cuda: this PyTorch has no CUDA device" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"spec": 3, "data": "blobs", "set": []}',
                                     '{"spec": "x.flash", "data": "blobs", "set": [], "epochs": -3}', "\udcff"])
def test_corrupt_run_json(tmp_path, capsys, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    rc, _, err = run_main(capsys, "train", "--resume", run)
    assert rc == 1
    assert err.startswith(f"{run / 'run.json'}: error: not a")
    clean(err)


def test_closed_stdout_is_a_quiet_exit():
    """`flashc check ... | head`: the reader went away; no BrokenPipeError, no traceback."""
    p = subprocess.Popen([sys.executable, "-m", "flashc.cli", "check", "specs/gpt2.flash"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before flashc writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert err == ""


def test_internal_error_is_one_line_and_the_traceback_needs_debug(capsys, monkeypatch, tiny_spec):
    import flashc.cli

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(flashc.cli, "load_model", broken)
    rc, out, err = run_main(capsys, "check", tiny_spec)
    assert rc == 3 and out == ""
    assert err.strip() == ("flashc: internal error, please report: ZeroDivisionError: a bug "
                           "(run with --debug for the traceback)")
    for argv in (["--debug", "check", str(tiny_spec)], ["check", str(tiny_spec), "--debug"]):
        rc, _, err = run_main(capsys, *argv)
        assert rc == 3 and "Traceback (most recent call last)" in err and "ZeroDivisionError: a bug" in err
        assert err.strip().endswith("flashc: internal error, please report: ZeroDivisionError: a bug")


def test_resume_of_a_missing_run_is_a_usage_error(tmp_path, capsys):
    rc, _, err = run_main(capsys, "train", "--resume", tmp_path / "nothing")
    assert rc == 2 and "is not a run directory" in err


def test_run_json_is_kept_readable(train_spec, tmp_path, capsys):
    run = tmp_path / "r"
    rc, _, _ = run_main(capsys, "train", train_spec, "--data", "blobs", "-o", run, "--epochs", "1")
    assert rc == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved == {"spec": str(train_spec), "data": "blobs", "set": [], "epochs": 1}


# --- item 8: names declared twice ---------------------------------------------------------------------

BODY = "  input x: float32[B, 4]\n  output y = x |> linear(3)\n"
DUPLICATES = {
    "model-parameter": ("model M(d = 3, d = 4) {\n" + BODY + "}\n", "1:16", "parameter `d` of model M is declared twice"),
    "model": ("model M() {\n" + BODY + "}\nmodel M() {\n" + BODY + "}\n", "5:1", "model `M` is declared twice"),
    "block": ("model M() {\n  block A(x) {\n    return x\n  }\n  block A(x) {\n    return x |> relu\n  }\n" + BODY + "}\n",
              "5:3", "block `A` is declared twice (first at line 2)"),
    "block-parameter": ("model M() {\n  block A(x, k = 1, k = 2) {\n    return x\n  }\n" + BODY + "}\n", "2:21",
                        "parameter `k` of block A is declared twice"),
    "nested-block": ("model M() {\n  block A(x) {\n    block C(y) {\n      return y\n    }\n    block C(y) {\n"
                     "      return y\n    }\n    return x |> C\n  }\n" + BODY + "}\n", "6:5", "block `C` is declared twice"),
    "train": ("model M() {\n" + BODY + "}\n" + "train M {\n  loss mse(y, y)\n  optimizer sgd(lr = 0.1)\n}\n" * 2, "9:1",
              "a train section for model `M` is declared twice (first at line 5)"),
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_names_declared_twice_fail_check(tmp_path, capsys, case):
    text, where, words = DUPLICATES[case]
    spec = tmp_path / "d.flash"
    spec.write_text(text)
    rc, out, err = run_main(capsys, "check", spec)
    assert rc == 1 and out == ""
    assert err.startswith(f"{spec}:{where}: error: {words}"), err


def test_an_imported_file_with_a_duplicate_is_refused(tmp_path, capsys):
    (tmp_path / "lib.flash").write_text(DUPLICATES["block"][0])
    spec = tmp_path / "main.flash"
    spec.write_text('import "lib.flash"\nmodel Main() {\n' + BODY + "}\n")
    rc, _, err = run_main(capsys, "check", spec)
    assert rc == 1 and f"{tmp_path / 'lib.flash'}:5:3: error: block `A` is declared twice" in err
