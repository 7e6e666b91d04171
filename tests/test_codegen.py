"""Generated PyTorch source: standalone, importable, equal to to_torch(); readable state-dict
names; golden files for LeNet-5's source and its `flashc check` table.

Regenerate the golden files with:  FLASHC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_codegen.py
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import flashc
from flashc.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = Path(__file__).resolve().parent / "golden"
SMALL_GPT2 = dict(depth=2, d=64, heads=4, vocab=100, ctx=32)
OVERRIDES = {"gpt2": SMALL_GPT2}
SPEC_NAMES = ["gpt2", "lenet5", "mlp_digits", "text_classifier"]  # the model library has its own tests
REGENERATE = "FLASHC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_codegen.py"


def load(name: str) -> flashc.Spec:
    return flashc.load(SPECS / f"{name}.flash", **OVERRIDES.get(name, {}))


def import_file(path: Path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    return module


def example_inputs(spec: flashc.Spec, batch: int = 2, seq: int = 7) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    out = []
    for v in spec.graph.inputs:
        shape = tuple(batch if str(d) == "B" else seq if str(d) == "T" else int(d) for d in v.type.shape)
        if v.type.dtype == "float32":
            out.append(torch.from_numpy(rng.standard_normal(shape).astype(np.float32)))
        elif v.type.dtype == "int64":
            out.append(torch.from_numpy(rng.integers(0, spec.graph.params["vocab"], shape)))
        else:
            mask = torch.zeros(shape, dtype=torch.bool)
            mask[0, -2:] = True
            out.append(mask)
    return out


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def check_golden(path: Path, actual: str) -> None:
    if os.environ.get("FLASHC_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"golden file {path} is missing; create it with:\n  {REGENERATE}"
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            f"{path.name} (golden)", f"{path.name} (generated)"))
        print(diff)
        pytest.fail(f"{path.name} differs from the generated output:\n{diff}\n"
                    f"if the change is intended, regenerate with:\n  {REGENERATE}")


# --- standalone source ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_generated_source_is_standalone_and_equals_to_torch(name, tmp_path):
    spec = load(name)
    source = spec.torch_source()
    assert imported_modules(source) == {"torch"}
    assert "flashc" not in re.sub(r'""".*?"""', "", source, flags=re.S)  # only the docstring names flashc
    path = tmp_path / f"{name}_model.py"
    path.write_text(source)
    module = import_file(path, f"generated_{name}")
    assert not any(m.startswith("flashc") for m in vars(module) if not m.startswith("__"))

    reference = spec.to_torch(seed=3).eval()
    generated = getattr(module, spec.name)().eval()
    generated.load_state_dict(reference.state_dict(), strict=True)
    assert module.__dict__[spec.name].input_names == tuple(v.name for v in spec.graph.inputs)
    assert module.__dict__[spec.name].output_names == tuple(n for n, _ in spec.graph.outputs)

    for batch, seq in [(2, 7), (3, 4)]:
        inputs = example_inputs(spec, batch, seq)
        with torch.no_grad():
            torch.testing.assert_close(generated(*inputs), reference(*inputs), atol=0, rtol=0)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_cli_compile_torch_writes_the_same_source(name, tmp_path, capsys):
    out = tmp_path / f"{name}.py"
    sets = [f"--set={k}={v}" for k, v in OVERRIDES.get(name, {}).items()]
    assert cli_main(["compile", str(SPECS / f"{name}.flash"), "--target", "torch", "-o", str(out), *sets]) == 0
    assert "wrote" in capsys.readouterr().out
    spec = load(name)
    assert out.read_text() == spec.torch_source()

    module = import_file(out, f"cli_generated_{name}")
    model = getattr(module, spec.name)().eval()
    reference = spec.to_torch(seed=3).eval()
    model.load_state_dict(reference.state_dict())
    inputs = example_inputs(spec)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), reference(*inputs), atol=0, rtol=0)


def test_generated_source_is_deterministic():
    assert load("gpt2").torch_source() == load("gpt2").torch_source()


def test_generated_gpt2_keeps_the_tie_after_loading(tmp_path):
    spec = load("gpt2")
    path = tmp_path / "gpt2_model.py"
    path.write_text(spec.torch_source())
    model = import_file(path, "generated_gpt2_tie").GPT2()
    model.load_state_dict(spec.to_torch(seed=3).state_dict())
    assert model.linear.weight is model.wte.weight
    assert sum(p.numel() for p in model.parameters()) == spec.parameter_count


# --- state-dict names follow the spec ---------------------------------------------------------


GPT2_KEYS = ["wte.weight", "wpe.weight"] + [
    f"blocks.{i}.{k}"
    for i in range(2)
    for k in [
        "layernorm.weight", "layernorm.bias",
        "attention.q.weight", "attention.q.bias", "attention.k.weight", "attention.k.bias",
        "attention.v.weight", "attention.v.bias", "attention.out.weight", "attention.out.bias",
        "layernorm_1.weight", "layernorm_1.bias",
        "linear.weight", "linear.bias", "linear_1.weight", "linear_1.bias",
    ]
] + ["layernorm.weight", "layernorm.bias", "linear.weight"]

STATE_KEYS = {
    "gpt2": GPT2_KEYS,
    "lenet5": ["conv2d.weight", "conv2d.bias", "conv2d_1.weight", "conv2d_1.bias", "linear.weight", "linear.bias",
               "linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"],
    "mlp_digits": ["linear.weight", "linear.bias", "linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"],
    "text_classifier": ["embedding.weight", "embedding_1.weight"] + [
        f"encoder.{i}.{k}"
        for i in range(2)
        for k in [
            "attention.q.weight", "attention.q.bias", "attention.k.weight", "attention.k.bias",
            "attention.v.weight", "attention.v.bias", "attention.out.weight", "attention.out.bias",
            "layernorm.weight", "layernorm.bias", "linear.weight", "linear.bias",
            "linear_1.weight", "linear_1.bias", "layernorm_1.weight", "layernorm_1.bias",
        ]
    ] + ["linear.weight", "linear.bias"],
}


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_state_dict_keys_follow_the_spec(name):
    spec = load(name)
    keys = list(spec.to_torch(seed=3).state_dict())
    assert keys == STATE_KEYS[name]
    assert not [k for k in keys if re.search(r"(^|\.)m_\d+", k)]
    # the IR's weights are the state dict minus tied aliases
    assert set(spec.graph.weights) <= set(keys)
    assert list(spec.init_weights(3)) == sorted(spec.graph.weights)


def test_gpt2_weights_only_tie_is_an_alias():
    keys = set(load("gpt2").graph.weights)
    assert set(GPT2_KEYS) - keys == {"linear.weight"}


def test_to_torch_weights_from_dict_state_dict_and_safetensors(tmp_path):
    from safetensors.numpy import save_file

    spec = load("mlp_digits")
    arrays = spec.init_weights(9)
    save_file(arrays, str(tmp_path / "w.safetensors"))
    x = example_inputs(spec)[0]
    want = spec.to_torch(seed=9).eval()(x)
    for weights in (arrays, spec.to_torch(seed=9).state_dict(), tmp_path / "w.safetensors",
                    str(tmp_path / "w.safetensors")):
        torch.testing.assert_close(spec.to_torch(weights=weights).eval()(x), want, atol=0, rtol=0)
    assert not torch.equal(spec.to_torch(seed=10).eval()(x), want)


# --- golden files -----------------------------------------------------------------------------


def test_lenet5_source_golden():
    check_golden(GOLDEN / "lenet5.py", flashc.load(SPECS / "lenet5.flash").torch_source())


def test_lenet5_check_table_golden(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli_main(["check", "specs/lenet5.flash"]) == 0
    out = capsys.readouterr().out
    assert out == flashc.load(SPECS / "lenet5.flash").table() + "\n"
    check_golden(GOLDEN / "lenet5.check.txt", out)


def test_lenet5_golden_module_runs(tmp_path):
    """The golden file itself is a working model equal to to_torch()."""
    golden = GOLDEN / "lenet5.py"
    if not golden.exists():
        pytest.skip("golden file not generated yet")
    model = import_file(golden, "golden_lenet5").LeNet5().eval()
    spec = flashc.load(SPECS / "lenet5.flash")
    reference = spec.to_torch(seed=3).eval()
    model.load_state_dict(reference.state_dict())
    x = example_inputs(spec)[0]
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=0, rtol=0)
