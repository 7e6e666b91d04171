"""Shared by the model-zoo tests: run a spec in PyTorch and onnxruntime with given weights and
compare both with a reference module's outputs.

A reference's state dict reaches the spec by an explicit rename in each test (the names the
spec cannot take, such as attention's q/k/v/out); nothing else is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import flashc

ATOL = 1e-4


def numpy_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def perturb(module: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    """Random values for every parameter and batchnorm statistic, so a weight read from the wrong
    place, a dropped bias or an unused running mean shows; 1-D weights (norm scales) around one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        stats = [(n, b) for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var"))]
        for name, p in [*module.named_parameters(), *stats]:  # not rotary tables or other fixed buffers
            noise = torch.randn(p.shape, generator=gen) * std
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif p.dim() == 1 and name.endswith("weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)
    return module.eval()


def saved(module: torch.nn.Module, folder: Path) -> Path:
    """The reference's state dict as a .safetensors file, under its own names (tied copies included)."""
    from safetensors.numpy import save_file

    path = folder / "reference.safetensors"
    save_file(numpy_state(module), str(path))
    return path


def run_both(spec: flashc.Spec, weights: Mapping[str, np.ndarray] | Path, feeds: dict[str, np.ndarray],
             opset: int | None = None) -> dict[str, list[np.ndarray]]:
    """Every output of the spec, from its torch module and from onnxruntime, with the same weights:
    a dict under the spec's names, or a reference's checkpoint file read through the map beside the spec."""
    if not isinstance(weights, Path):
        missing, unexpected = set(spec.graph.weights) - set(weights), set(weights) - set(spec.graph.weights)
        assert not missing and not unexpected, f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        weights = dict(weights)
    module = spec.to_torch(weights=weights).eval()
    with torch.no_grad():
        got = module(*(torch.from_numpy(feeds[name]) for name in spec.inputs))
    got = got if isinstance(got, tuple) else (got,)
    kwargs = {} if opset is None else {"opset": opset}
    proto = spec.to_onnx(weights=weights, **kwargs)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return {"torch": [g.numpy() for g in got], "onnxruntime": session.run(None, feeds)}


def assert_matches_reference(spec: flashc.Spec, weights: Mapping[str, np.ndarray] | Path, feeds: dict[str, np.ndarray],
                             want: list[np.ndarray] | np.ndarray, atol: float = ATOL, opset: int | None = None,
                             outputs: list[str] | None = None) -> None:
    """Both backends equal the reference on the named outputs (all of them by default)."""
    want = [want] if isinstance(want, np.ndarray) else list(want)
    names = [n for n, _ in spec.graph.outputs]
    chosen = [names.index(n) for n in outputs] if outputs else list(range(len(names)))
    assert len(chosen) == len(want)
    for backend, got in run_both(spec, weights, feeds, opset).items():
        for i, w in zip(chosen, want):
            assert np.isfinite(w).all()
            assert got[i].shape == w.shape, (backend, names[i], got[i].shape, w.shape)
            np.testing.assert_allclose(got[i], w, rtol=0, atol=atol, err_msg=f"{backend}: {names[i]}")
