"""The main job in one file: compile a real spec to ONNX and PyTorch, run both, compare.

    python examples/quickstart.py [SPEC]      (default: specs/lenet5.flash)
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


def main(spec_path: str) -> int:
    t0 = time.perf_counter()
    spec = flashc.load(spec_path)
    print(spec.table())
    print(f"\nchecked in {time.perf_counter() - t0:.2f} s")

    out = Path(tempfile.mkdtemp(prefix="flashc-"))
    onnx_path = out / f"{spec.name}.onnx"
    t0 = time.perf_counter()
    spec.to_onnx(onnx_path, seed=0)
    print(f"wrote {onnx_path} in {time.perf_counter() - t0:.2f} s")
    (out / f"{spec.name}.py").write_text(spec.torch_source())
    model = spec.to_torch(seed=0).eval()  # the same seeded weights as the ONNX file

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
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)
    with torch.no_grad():
        ref = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
    refs = ref if isinstance(ref, tuple) else (ref,)
    for (name, _), a, b in zip(spec.graph.outputs, got, refs):
        print(f"\n{name}: onnxruntime {list(a.shape)}, argmax {a.reshape(a.shape[0], -1).argmax(-1).tolist()}")
        print(f"{name}: pytorch     {list(b.shape)}, argmax {b.reshape(b.shape[0], -1).argmax(-1).tolist()}")
        diff = float(np.abs(a - b.numpy()).max())
        print(f"{name}: max |onnxruntime - pytorch| = {diff:.2e}")
        if diff > 1e-4:
            print("MISMATCH", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent.parent / "specs" / "lenet5.flash")))
