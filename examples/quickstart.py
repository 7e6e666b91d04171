"""The main job in one file: check a real spec, train it, compile it to ONNX and PyTorch, run both.

    python examples/quickstart.py            # specs/mlp_digits.flash: 15 epochs on scikit-learn's digits
    python examples/quickstart.py SPEC       # any spec: compile and compare on random inputs (no training)

The digits run trains for 15 epochs, not the spec's `epochs 30`, to stay quick (early stopping
may end it sooner); `flashc train specs/mlp_digits.flash --data digits -o RUN` runs the full 30.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import flashc
from flashc.train.builtin import digits
from flashc.train.dataset import split

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 15  # the header above says so; a test keeps them in step


def random_inputs(spec: flashc.Spec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for v in spec.graph.inputs:
        shape = [d if isinstance(d, int) else 4 for d in v.type.shape]
        if v.type.dtype.startswith("float"):
            feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
        elif v.type.dtype == "bool":
            feeds[v.name] = np.zeros(shape, dtype=bool)
        else:
            feeds[v.name] = rng.integers(0, 10, shape)
    return feeds


def compare(spec: flashc.Spec, onnx_path: Path, weights: str | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the ONNX file in onnxruntime and the PyTorch module on the same inputs; fail on disagreement."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)
    model = spec.to_torch(weights=weights, seed=0).eval()
    with torch.no_grad():
        ref = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
    refs = ref if isinstance(ref, tuple) else (ref,)
    for (name, _), a, b in zip(spec.graph.outputs, got, refs):
        diff = float(np.abs(a - b.numpy()).max())
        print(f"{name}: {list(a.shape)}, max |onnxruntime - pytorch| = {diff:.2e}")
        if diff > 1e-4:
            raise SystemExit(f"MISMATCH in {name}")
    return got


def main(spec_path: str | None = None) -> int:
    out = Path(tempfile.mkdtemp(prefix="flashc-"))
    t0 = time.perf_counter()
    spec = flashc.load(spec_path or ROOT / "specs" / "mlp_digits.flash")
    print(spec.table())
    print(f"\nchecked in {time.perf_counter() - t0:.2f} s\n")

    weights = None
    if spec_path is None:  # train on the real digits first
        spec.fit("digits", out / "run", epochs=EPOCHS)
        weights = str(out / "run" / "best.safetensors")
    onnx_path = out / f"{spec.name}.onnx"
    t0 = time.perf_counter()
    spec.to_onnx(onnx_path, weights=weights, seed=0)
    (out / f"{spec.name}.py").write_text(spec.torch_source())
    print(f"\nwrote {onnx_path} and {spec.name}.py in {time.perf_counter() - t0:.2f} s")

    if spec_path is not None:
        compare(spec, onnx_path, weights, random_inputs(spec))
        return 0
    test = split(digits(spec.graph, None), 0.1, 0.1, spec.train.seed).test
    logits = compare(spec, onnx_path, weights, {"pixels_in": test.arrays["pixels_in"]})[0]
    accuracy = float((logits.argmax(-1) == test.arrays["label"]).mean())
    print(f"onnxruntime accuracy on {len(test)} held-out digits: {accuracy:.3f}")
    print(f"first predictions: {logits.argmax(-1)[:12].tolist()}  labels: {test.arrays['label'][:12].tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
