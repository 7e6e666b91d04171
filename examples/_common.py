"""What the examples share: where they write, one CPU thread, the test split, the ONNX check."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import flashc
from flashc.train.data import load_data
from flashc.train.dataset import Dataset, Splits, split

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def out_dir(argv: list[str], name: str) -> Path:
    """argv[1] when given, else a fresh temporary directory."""
    path = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix=f"flashc-{name}-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Small models train fastest on one thread of a busy machine, and reproducibly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def timed(results: dict[str, Any], key: str = "seconds") -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        results[key] = round(time.perf_counter() - start, 2)


def splits(spec: flashc.Spec, data: str) -> Splits:
    """Train / validation / test rows of `data`, exactly as `fit` splits them."""
    config = spec.train
    return split(load_data(data, spec.graph), config.settings["validation"], 0.1, config.seed)


def test_split(spec: flashc.Spec, data: str) -> Dataset:
    return splits(spec, data).test


def onnx_check(spec: flashc.Spec, weights: Path, feeds: dict[str, np.ndarray], path: Path) -> tuple[float, list]:
    """Compile the trained weights to ONNX, run onnxruntime and the torch model (eval mode) on
    the same inputs. Returns the largest difference over all outputs (AssertionError above
    1e-4) and onnxruntime's outputs."""
    import onnxruntime as ort

    spec.to_onnx(path, weights=weights)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)
    model = spec.to_torch(weights=weights).eval()
    with torch.no_grad():
        want = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
    want = want if isinstance(want, tuple) else (want,)
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    for (name, _), g, w in zip(spec.graph.outputs, got, want):
        assert g.shape == tuple(w.shape), f"{name}: onnxruntime {g.shape}, torch {tuple(w.shape)}"
    assert diff <= 1e-4, f"onnxruntime and torch differ by {diff:.2e}"
    return diff, got


def show(title: str, results: dict[str, Any]) -> None:
    print(f"\n{title}")
    for key, value in results.items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")


def run_main(main: Any, name: str) -> None:
    main(out_dir(sys.argv, name))
