"""The command line: check, compile, run; exit codes, messages, and what is (not) written.

Exit codes as flashc.cli defines them: 0 ok, 1 a FlashError (an error in the spec, a
file that cannot be read, weights that do not fit), 2 a usage error (a malformed
`--set`, a bad `run` input, argparse's own errors). No failure prints a traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flashc
from flashc.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
LENET = SPECS / "lenet5.flash"
GPT2 = SPECS / "gpt2.flash"
BAD_SPEC = "model M() {\n  input x: float32[B, 4]\n  output y = x |> lnear(3)\n}\n"


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m flashc.cli ARGS` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "flashc.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or ROOT, timeout=120,
    )


def run_main(capsys, *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def no_leftovers(directory: Path) -> list[str]:
    """Temporary files an atomic write could leave behind."""
    return [p.name for p in directory.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "lenet5.onnx"
    assert main(["compile", str(LENET), "--target", "onnx", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32))
    return path


# --- version and help ----------------------------------------------------------------------------------

def test_version():
    r = cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"flashc {flashc.__version__}"


COMMANDS = ["check", "compile", "train", "run", "graph", "fmt", "lsp"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: flashc {command}" in out
    assert "example" in out
    assert re.search(rf"^\s+flashc {command} \S+", out, re.MULTILINE), out


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_console_script():
    script = Path(sys.executable).with_name("flashc")
    if not script.exists():
        pytest.skip("the flashc console script is not installed beside this interpreter")
    r = subprocess.run([str(script), "check", str(LENET)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "total parameters: 61,706" in r.stdout


def test_no_command_is_a_usage_error():
    r = cli()
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "usage: flashc" in r.stderr


# --- check ------------------------------------------------------------------------------------------------

def test_check_lenet5_prints_the_table_and_the_count(capsys):
    rc, out, err = run_main(capsys, "check", LENET)
    assert rc == 0, err
    assert "total parameters: 61,706" in out
    assert "inputs:  image: float32[B, 1, 32, 32]" in out
    assert "outputs: logits: float32[B, 10]" in out
    assert err == ""


def test_check_as_a_subprocess():
    r = cli("check", "specs/lenet5.flash")
    assert r.returncode == 0, r.stderr
    assert "61,706" in r.stdout


def test_check_json(capsys):
    rc, out, _ = run_main(capsys, "check", LENET, "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["total_parameters"] == 61706
    assert data["model"] == "LeNet5"
    assert data["outputs"] == [{"name": "logits", "type": "float32[B, 10]"}]
    assert data["weights"]["conv2d.weight"] == [6, 1, 5, 5]


def test_set_overrides_change_the_count(capsys):
    rc, out, _ = run_main(capsys, "check", GPT2, "--set", "depth=2", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["params"]["depth"] == 2
    assert data["total_parameters"] == 53_561_088  # 124,439,808 less 10 blocks of 7,087,872


def test_several_set_overrides(capsys):
    rc, out, _ = run_main(capsys, "check", GPT2, "--set", "depth=1", "--set", "d=64", "--set", "heads=2", "--json")
    assert rc == 0
    assert json.loads(out)["params"] == {"vocab": 50257, "ctx": 1024, "d": 64, "heads": 2, "depth": 1, "p": 0.1}
    assert json.loads(out)["total_parameters"] == flashc.load(GPT2, depth=1, d=64, heads=2).parameter_count


def test_check_bad_spec_reports_file_line_col(tmp_path):
    spec = tmp_path / "bad.flash"
    spec.write_text(BAD_SPEC, encoding="utf-8")
    r = cli("check", spec)
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0] == f"{spec}:3:19: error: undefined name `lnear`"
    assert lines[1] == "      output y = x |> lnear(3)"
    assert lines[2] == "    " + " " * 18 + "^^^^^"
    assert lines[3] == "  hint: did you mean `linear`?"
    assert "Traceback" not in r.stderr


def test_check_bad_spec_in_process(tmp_path, capsys):
    spec = tmp_path / "bad.flash"
    spec.write_text(BAD_SPEC, encoding="utf-8")
    rc, out, err = run_main(capsys, "check", spec)
    assert rc == 1
    assert out == ""
    assert err.startswith(f"{spec}:3:19: error: undefined name `lnear`")


def _non_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.flash"
    path.write_bytes(b"# caf\xe9\nmodel M() {}\n")
    return path


@pytest.mark.parametrize(
    "make, code, message",
    [
        (lambda t: t / "missing.flash", 1, "no such file"),
        (lambda t: t, 1, "is a directory, not a .flash file"),
        (_non_utf8, 1, "the file is not valid UTF-8 text"),
    ],
    ids=["missing", "directory", "non-utf8"],
)
def test_unreadable_spec_exits_cleanly(tmp_path, make, code, message):
    path = make(tmp_path)
    r = cli("check", path)
    assert r.returncode == code
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{path}:")
    assert message in r.stderr


@pytest.mark.parametrize(
    "sets, code, message",
    [
        (["--set", "d"], 2, "flashc check: error: --set expects NAME=VALUE, got 'd'"),
        (["--set", "=3"], 2, "flashc check: error: --set expects NAME=VALUE, got '=3'"),
        (["--set", "d="], 2, "flashc check: error: --set expects NAME=VALUE, got 'd='"),
        (["--set", "2d=3"], 2, "flashc check: error: --set expects NAME=VALUE, got '2d=3'"),
        (["--set", "d=abc"], 1, "cannot set `d` to 'abc': it is the number 768, so the new value must be of the same kind"),
        (["--set", "d=1.5"], 1, "cannot set `d` to 1.5"),
        (["--set", "dd=3"], 1, "unknown parameter `dd` for model GPT2"),
    ],
    ids=["no-equals", "no-name", "no-value", "bad-name", "wrong-kind", "float-for-int", "unknown-name"],
)
def test_bad_set_exits_cleanly(sets, code, message):
    r = cli("check", "specs/gpt2.flash", *sets)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    assert r.stdout == ""


def test_unknown_model_name(capsys):
    rc, _, err = run_main(capsys, "check", LENET, "--model", "LeNet")
    assert rc == 1
    assert "no model named LeNet" in err
    assert "did you mean `LeNet5`?" in err


# --- compile ------------------------------------------------------------------------------------------------

def test_compile_onnx_writes_a_valid_model(tmp_path, capsys):
    import onnx

    out = tmp_path / "lenet5.onnx"
    rc, stdout, err = run_main(capsys, "compile", LENET, "--target", "onnx", "-o", out)
    assert rc == 0, err
    assert stdout.strip() == f"wrote {out} (LeNet5, 61,706 parameters, target onnx; weights: seeded initialisation, " \
                             "seed 0 (as `flashc init`))"
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert no_leftovers(tmp_path) == []


def test_compile_torch_writes_python_source(tmp_path, capsys):
    import ast

    out = tmp_path / "lenet5.py"
    rc, stdout, err = run_main(capsys, "compile", LENET, "--target", "torch", "-o", out)
    assert rc == 0, err
    assert stdout.strip().startswith(f"wrote {out} (LeNet5, 61,706 parameters, target torch; weights: PyTorch's "
                                     "default initialisation; load weights with safetensors.torch.load_model")
    source = out.read_text(encoding="utf-8")
    ast.parse(source)
    assert "import torch" in source
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize("target, name", [("onnx", "m.onnx"), ("torch", "m.py")])
def test_compile_into_a_missing_directory_fails_cleanly(tmp_path, target, name):
    out = tmp_path / "no" / "such" / "dir" / name
    r = cli("compile", LENET, "--target", target, "-o", out)
    assert r.returncode == 2  # a usage error (issue 10): no fake `file:1:1` position
    assert r.stderr.startswith("flashc compile: error:")
    assert "Traceback" not in r.stderr
    assert "does not exist" in r.stderr
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("target, name", [("onnx", "m.onnx"), ("torch", "m.py")])
def test_failed_compile_leaves_the_output_alone(tmp_path, target, name):
    spec = tmp_path / "bad.flash"
    spec.write_text(BAD_SPEC, encoding="utf-8")
    out = tmp_path / name
    out.write_text("old content", encoding="utf-8")
    r = cli("compile", spec, "--target", target, "-o", out)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"{spec}:3:19: error: undefined name `lnear`" in r.stderr
    assert out.read_text(encoding="utf-8") == "old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bad.flash", name])


def test_failed_compile_does_not_create_the_output(tmp_path, capsys):
    spec = tmp_path / "bad.flash"
    spec.write_text(BAD_SPEC, encoding="utf-8")
    out = tmp_path / "m.onnx"
    rc, _, _ = run_main(capsys, "compile", spec, "--target", "onnx", "-o", out)
    assert rc == 1
    assert not out.exists()
    assert no_leftovers(tmp_path) == []


def test_compile_requires_a_target(capsys):
    with pytest.raises(SystemExit) as info:
        main(["compile", str(LENET), "-o", "x.onnx"])
    assert info.value.code == 2
    assert "--target" in capsys.readouterr().err


# --- weights --------------------------------------------------------------------------------------------------

@pytest.fixture
def seeded_weights(tmp_path) -> tuple[Path, dict]:
    from safetensors.numpy import save_file

    weights = flashc.load(LENET).init_weights(seed=5)
    path = tmp_path / "w.safetensors"
    save_file(weights, str(path))
    return path, weights


def test_compile_onnx_uses_the_given_weights(tmp_path, seeded_weights, capsys):
    import onnx
    from onnx import numpy_helper

    path, weights = seeded_weights
    out = tmp_path / "w.onnx"
    rc, _, err = run_main(capsys, "compile", LENET, "--target", "onnx", "-o", out, "--weights", path)
    assert rc == 0, err
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    default = flashc.load(LENET).init_weights(seed=0)
    for name, array in weights.items():
        np.testing.assert_array_equal(inits[name], array)
        assert not np.array_equal(inits[name], default[name]) or not array.any()


def test_compile_onnx_weights_run_in_onnxruntime(tmp_path, seeded_weights, image, capsys):
    """The compiled model computes with the given weights: outputs differ from the seed-0 model."""
    import onnxruntime as ort

    path, _ = seeded_weights
    with_w, without = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert run_main(capsys, "compile", LENET, "--target", "onnx", "-o", with_w, "--weights", path)[0] == 0
    assert run_main(capsys, "compile", LENET, "--target", "onnx", "-o", without)[0] == 0
    x = np.load(image)
    a = ort.InferenceSession(str(with_w), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    b = ort.InferenceSession(str(without), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert a.shape == b.shape == (2, 10)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("target", ["onnx", "torch"])
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda w: w.pop("conv2d.bias"), "`conv2d.bias` is missing"),
        (lambda w: w.update({"conv2d.bias": np.zeros((3, 3), np.float32)}), "`conv2d.bias` has shape [3, 3], the spec needs [6]"),
    ],
    ids=["missing", "misshapen"],
)
def test_weights_that_do_not_fit_fail_clearly(tmp_path, target, edit, message):
    from safetensors.numpy import save_file

    weights = flashc.load(LENET).init_weights(seed=5)
    edit(weights)
    path = tmp_path / "bad.safetensors"
    save_file(weights, str(path))
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    r = cli("compile", LENET, "--target", target, "-o", out, "--weights", path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "do not fit model LeNet5" in r.stderr
    assert message in r.stderr
    assert out.read_bytes() == b"old"
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [None, b"not a safetensors file"], ids=["missing", "garbage"])
def test_unreadable_weights_fail_clearly(tmp_path, content, capsys):
    path = tmp_path / "w.safetensors"
    if content is not None:
        path.write_bytes(content)
    rc, _, err = run_main(capsys, "compile", LENET, "--target", "onnx", "-o", tmp_path / "m.onnx", "--weights", path)
    assert rc == 1
    expected = "no such weights file" if content is None else "cannot read safetensors weights"
    assert expected in err
    assert not (tmp_path / "m.onnx").exists()


# --- run ---------------------------------------------------------------------------------------------------------

def test_run_prints_the_outputs(lenet_onnx, image, capsys):
    rc, out, err = run_main(capsys, "run", lenet_onnx, "--input", image)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "logits: float32[2, 10]"
    assert any(line.startswith("argmax over the last axis: [") for line in lines)


def test_run_saves_the_outputs(lenet_onnx, image, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "out.npz"
    rc, stdout, err = run_main(capsys, "run", lenet_onnx, "--input", image, "-o", out)
    assert rc == 0, err
    assert f"wrote {out}" in stdout
    saved = np.load(out)
    assert saved.files == ["logits"]
    expected = ort.InferenceSession(str(lenet_onnx), providers=["CPUExecutionProvider"]).run(None, {"image": np.load(image)})[0]
    np.testing.assert_array_equal(saved["logits"], expected)
    assert no_leftovers(tmp_path) == []


def test_run_with_named_inputs(lenet_onnx, image, tmp_path, capsys):
    npz = tmp_path / "in.npz"
    np.savez(npz, image=np.load(image))
    assert run_main(capsys, "run", lenet_onnx, "--input", npz)[0] == 0
    assert run_main(capsys, "run", lenet_onnx, "--input", f"image={image}")[0] == 0


def test_run_casts_the_input_dtype(lenet_onnx, tmp_path, capsys):
    x = tmp_path / "x64.npy"
    np.save(x, np.zeros((1, 1, 32, 32), np.float64))
    rc, out, _ = run_main(capsys, "run", lenet_onnx, "--input", x)
    assert rc == 0
    assert out.startswith("logits: float32[1, 10]")


def test_run_with_a_wrong_input_name(lenet_onnx, image):
    r = cli("run", lenet_onnx, "--input", f"pixels={image}")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "image" in r.stderr


def test_run_with_a_wrong_rank(lenet_onnx, tmp_path):
    x = tmp_path / "x3.npy"
    np.save(x, np.zeros((2, 32, 32), np.float32))
    r = cli("run", lenet_onnx, "--input", x)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "input 'image' needs rank 4" in r.stderr
    assert "got shape [2, 32, 32]" in r.stderr


def test_run_with_a_wrong_size(lenet_onnx, tmp_path, capsys):
    x = tmp_path / "x31.npy"
    np.save(x, np.zeros((2, 1, 31, 31), np.float32))
    rc, out, err = run_main(capsys, "run", lenet_onnx, "--input", x)
    assert rc == 1
    assert "onnxruntime failed" in err
    assert out == ""


@pytest.mark.parametrize("which", ["model", "input"])
def test_run_with_missing_files(lenet_onnx, image, tmp_path, which, capsys):
    model = tmp_path / "none.onnx" if which == "model" else lenet_onnx
    data = tmp_path / "none.npy" if which == "input" else image
    rc, _, err = run_main(capsys, "run", model, "--input", data)
    assert rc == 2
    assert f"no such {which} file" in err


def test_run_a_file_that_is_not_onnx(image, capsys):
    rc, _, err = run_main(capsys, "run", image, "--input", image)
    assert rc == 1
    assert "onnxruntime cannot load this model" in err


def test_run_an_input_that_is_not_numpy(lenet_onnx, tmp_path, capsys):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"garbage")
    rc, _, err = run_main(capsys, "run", lenet_onnx, "--input", bad)
    assert rc == 1  # a bad input file is reported as `path: error:` (issue 10)
    assert err.startswith(f"{bad}: error: not a .npy or .npz file")


# --- torch stays out of check and compile --onnx ----------------------------------------------------------

@pytest.mark.parametrize(
    "argv",
    [
        ["check", "specs/gpt2.flash", "--set", "depth=1"],
        ["check", "specs/lenet5.flash", "--json"],
        ["compile", "specs/lenet5.flash", "--target", "onnx", "-o", "{tmp}/m.onnx"],
    ],
    ids=["check", "check-json", "compile-onnx"],
)
def test_check_and_compile_onnx_do_not_import_torch(tmp_path, argv):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = (
        "import sys, flashc.cli\n"
        f"rc = flashc.cli.main({argv!r})\n"
        "assert rc == 0, rc\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
