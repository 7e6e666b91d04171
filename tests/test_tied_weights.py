"""Tied weights read from checkpoints under any of their names (issue 15).

`safetensors.torch.save_model` keeps one name of each shared tensor (`linear.weight` for
GPT-2's output projection, tied to `wte.weight`); every reader of weights accepts either
name, refuses two disagreeing copies, and the loaded model keeps one tensor.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file, save_model

import flashc
from flashc.diagnostics import FlashError
from flashc.train.loop import _with_aliases
from flashc.weights import tied_names

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SMALL = dict(vocab=60, ctx=16, d=32, heads=4, ff=64, depth=2)  # applied where a spec declares them


def small_sets(path: Path) -> dict[str, int]:
    declared = flashc.load(path).graph.params
    return {k: v for k, v in SMALL.items() if k in declared}


def tied_specs() -> list[str]:
    """Every spec in specs/ with `weight = other.weight` (found, not listed by hand)."""
    return sorted(p.stem for p in SPECS.glob("*.flash") if tied_names(flashc.load(p).graph))


TIED = tied_specs()
GROUPS = [(name, key) for name in TIED for key in ("canonical", "alias")]


def load(name: str) -> flashc.Spec:
    spec = flashc.load(SPECS / f"{name}.flash", **small_sets(SPECS / f"{name}.flash"))
    assert spec.parameter_count < 2_000_000, f"{name} is still large: add its size parameters to SMALL"
    return spec


def trained_like(spec: flashc.Spec) -> torch.nn.Module:
    """A module whose weights differ from flashc's seeded ones, so a file that is not read shows."""
    model = spec.to_torch(seed=7).eval()
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def feeds(spec: flashc.Spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for v in spec.graph.inputs:
        shape = tuple(2 if not isinstance(d, int) else d for d in v.type.shape)
        if v.type.dtype == "int64":
            out[v.name] = rng.integers(0, spec.graph.params["vocab"], shape).astype(np.int64)
        elif v.type.dtype == "bool":
            mask = np.zeros(shape, dtype=bool)
            mask[0, -1] = True
            out[v.name] = mask
        else:
            out[v.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def compile_cli(name: str, weights: Path, out: Path) -> subprocess.CompletedProcess:
    sets = [a for k, v in small_sets(SPECS / f"{name}.flash").items() for a in ("--set", f"{k}={v}")]
    return subprocess.run(
        [sys.executable, "-m", "flashc.cli", "compile", str(SPECS / f"{name}.flash"), "--target", "onnx",
         "-o", str(out), "--weights", str(weights), *sets],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )


def assert_onnx_equals_module(spec: flashc.Spec, model: torch.nn.Module, path: Path) -> None:
    proto = onnx.load(str(path))
    initializers = [i.name for i in proto.graph.initializer]
    for canonical, aliases in tied_names(spec.graph).items():  # one initializer per tied tensor
        assert canonical in initializers and not set(aliases) & set(initializers)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = feeds(spec, np.random.default_rng(0))
    got = sess.run(None, x)
    with torch.no_grad():
        want = model(*(torch.from_numpy(x[v.name]) for v in spec.graph.inputs))
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)


def test_the_tied_specs_are_found():
    assert {"gpt2", "translation"} <= set(TIED)


@pytest.mark.parametrize("name", TIED)
def test_save_model_checkpoint_compiles(name, tmp_path):
    spec = load(name)
    model = trained_like(spec)
    save_model(model, str(tmp_path / "w.safetensors"))
    stored = set(load_numpy(tmp_path / "w.safetensors"))
    for canonical, aliases in tied_names(spec.graph).items():  # save_model keeps exactly one name
        assert len(stored & {canonical, *aliases}) == 1
    done = compile_cli(name, tmp_path / "w.safetensors", tmp_path / "m.onnx")
    assert done.returncode == 0, done.stderr
    assert_onnx_equals_module(spec, model, tmp_path / "m.onnx")


def only_under(model: torch.nn.Module, spec: flashc.Spec, which: str) -> dict[str, torch.Tensor]:
    """The state dict with each tied tensor under one name only: its own path or its (first) alias."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for canonical, aliases in tied_names(spec.graph).items():
        keep = canonical if which == "canonical" else aliases[0]
        for key in (canonical, *aliases):
            if key != keep:
                del state[key]
    return state


@pytest.mark.parametrize(("name", "which"), GROUPS)
def test_either_name_of_a_tied_weight_compiles(name, which, tmp_path):
    spec = load(name)
    model = trained_like(spec)
    save_file(only_under(model, spec, which), str(tmp_path / "w.safetensors"))
    done = compile_cli(name, tmp_path / "w.safetensors", tmp_path / "m.onnx")
    assert done.returncode == 0, done.stderr
    assert_onnx_equals_module(spec, model, tmp_path / "m.onnx")


@pytest.mark.parametrize(("name", "which"), GROUPS)
def test_to_torch_from_either_name_keeps_one_tensor(name, which, tmp_path):
    spec = load(name)
    model = trained_like(spec)
    save_file(only_under(model, spec, which), str(tmp_path / "w.safetensors"))
    for source in (tmp_path / "w.safetensors", only_under(model, spec, which)):
        loaded = spec.to_torch(weights=source)
        for canonical, aliases in tied_names(spec.graph).items():
            for alias in aliases:
                assert loaded.get_parameter(alias) is loaded.get_parameter(canonical)
            torch.testing.assert_close(loaded.get_parameter(canonical), model.get_parameter(canonical), rtol=0, atol=0)
        assert len(list(loaded.parameters())) == len(spec.graph.weights) - sum(
            w.spec.buffer for w in spec.graph.weights.values())


def test_gpt2_torch_tie_is_one_tensor(tmp_path):
    spec = load("gpt2")
    save_model(trained_like(spec), str(tmp_path / "w.safetensors"))
    model = spec.to_torch(weights=tmp_path / "w.safetensors")
    assert model.linear.weight is model.wte.weight


@pytest.mark.parametrize("name", TIED)
def test_in_memory_onnx_from_either_name(name):
    spec = load(name)
    model = trained_like(spec)
    ref = spec.to_onnx(weights=model.state_dict())  # a state dict lists both names, same tensor
    for which in ("canonical", "alias"):
        proto = spec.to_onnx(weights=only_under(model, spec, which))
        assert [i.name for i in proto.graph.initializer] == [i.name for i in ref.graph.initializer]
        for a, b in zip(proto.graph.initializer, ref.graph.initializer):
            np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))


def disagreeing(spec: flashc.Spec) -> tuple[dict[str, torch.Tensor], str, str]:
    state = {k: v.detach().clone() for k, v in trained_like(spec).state_dict().items()}
    canonical, aliases = next(iter(tied_names(spec.graph).items()))
    state[aliases[0]] = state[aliases[0]] + 1.0
    return state, canonical, aliases[0]


@pytest.mark.parametrize("name", TIED)
def test_disagreeing_tied_copies_are_a_clean_error(name, tmp_path):
    spec = load(name)
    state, canonical, alias = disagreeing(spec)
    save_file(state, str(tmp_path / "w.safetensors"))
    done = compile_cli(name, tmp_path / "w.safetensors", tmp_path / "m.onnx")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "error:" in done.stderr and f"`{canonical}`" in done.stderr and f"`{alias}`" in done.stderr
    assert not (tmp_path / "m.onnx").exists()
    for call in (lambda: spec.to_torch(weights=tmp_path / "w.safetensors"), lambda: spec.to_torch(weights=state),
                 lambda: spec.to_onnx(weights=state), lambda: _with_aliases(spec.graph, state, "last.safetensors")):
        with pytest.raises(FlashError, match="different values") as info:
            call()
        assert canonical in str(info.value) and alias in str(info.value)


def test_missing_tied_weight_names_both(tmp_path):
    spec = load("gpt2")
    state = only_under(trained_like(spec), spec, "canonical")
    del state["wte.weight"]
    with pytest.raises(FlashError, match=r"`wte.weight` is missing \(nor under its tied name `linear.weight`\)"):
        spec.to_onnx(weights=state)


def test_resume_weights_read_under_an_alias():
    """`flashc train --resume` and restore-best read their checkpoint through the same lookup."""
    spec = load("gpt2")
    model = trained_like(spec)
    state = _with_aliases(spec.graph, only_under(model, spec, "alias"), "last.safetensors")
    fresh = spec.to_torch(seed=1)
    fresh.load_state_dict(state, strict=True)
    assert fresh.linear.weight is fresh.wte.weight
    torch.testing.assert_close(fresh.wte.weight, model.wte.weight, rtol=0, atol=0)
