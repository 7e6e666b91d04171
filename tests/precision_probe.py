"""Run one spec at float32, float16 and int8 in onnxruntime; print the differences as JSON.

Run as a child process by tests/test_precision.py (`python tests/precision_probe.py NAME`), so a
model that crashes onnxruntime fails that spec's test instead of killing pytest.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"

# Small sizes of the specs whose published sizes are too large for a quick test.
REDUCED: dict[str, dict] = {
    "bert_base": dict(vocab=60, ctx=16, d=32, heads=4, ff=64, depth=2),
    "clip_vit_b32": dict(vocab=60, text_d=32, text_heads=4, text_ff=64, text_depth=2, size=32, patch=16, vision_d=32,
                         vision_heads=4, vision_ff=64, vision_depth=2, embed=16),
    "convnext_tiny": dict(classes=10, dim=8, depth3=1),
    "dcgan": dict(nz=8, ngf=8),
    "efficientnet_b0": dict(classes=10),
    "encoder4": dict(d=32, heads=4, ff=64),
    "gpt2": dict(depth=2, d=64, heads=4, vocab=100, ctx=32),
    "lstm_lm": dict(vocab=60, d=16, hidden=24),
    "mistral": dict(vocab=60, d=32, heads=4, kv_heads=2, ff=48, depth=2, window=4),
    "mixtral": dict(vocab=60, d=32, heads=4, kv_heads=2, ff=48, depth=2, experts=4, k=2),
    "mobilenet_v2": dict(classes=10),
    "resnet18": dict(width=8, size=32, classes=10),
    "t5_small": dict(vocab=60, d=32, d_kv=8, heads=4, ff=64, depth=2, buckets=8, max_distance=16),
    "text_classifier": dict(vocab=200, ctx=32, d=32, heads=4, ff=64, depth=2, classes=3),
    "tinyllama": dict(vocab=60, d=32, heads=4, kv_heads=2, ff=48, depth=2),
    "transformer": dict(d=32, heads=4, ff=64, depth=2),
    "translation": dict(vocab=60, ctx=16, d=32, heads=4, ff=64, depth=2),
    "unet": dict(width=4, size=16),
    "vit_b16": dict(size=32, patch=8, d=32, heads=4, mlp=64, depth=2, classes=10),
}
DIMS = {"B": 2, "N": 2, "T": 6, "S": 7, "H": 32, "W": 32, "L": 40}
MAX_DEFAULT_PARAMETERS = 50_000_000  # a spec not listed above runs at its own sizes up to this


def load(name: str) -> flashc.Spec:
    spec = flashc.load(SPECS / f"{name}.flash", **REDUCED.get(name, {}))
    if spec.parameter_count > MAX_DEFAULT_PARAMETERS:
        raise SystemExit(f"{name}: {spec.parameter_count:,} parameters; add small sizes to REDUCED in {__file__}")
    return spec


def inputs(spec: flashc.Spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    params = spec.graph.params
    for v in spec.graph.inputs:
        shape = tuple(int(d) if isinstance(d, int) else DIMS.get(str(d), 5) for d in v.type.shape)
        if v.type.dtype == "float32":
            feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
        elif v.type.dtype == "int64":
            vocabs = [params[k] for k in ("vocab", "src_vocab", "types") if k in params and k in v.name or k == "vocab"
                      and k in params]
            high = min(int(x) for x in vocabs) if vocabs else 2
            high = 2 if "type" in v.name else high
            feeds[v.name] = rng.integers(0, high, shape).astype(np.int64)
        elif v.type.dtype == "bool":
            mask = np.zeros(shape, dtype=bool)
            mask[0, -1] = True
            feeds[v.name] = mask
        else:
            raise SystemExit(f"no test data for {v.name}: {v.type}")
    return feeds


def main(name: str) -> None:
    spec = load(name)
    feeds = inputs(spec, np.random.default_rng(0))
    report: dict[str, object] = {"spec": name}
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, options in (("float32", {}), ("float16", {"dtype": "float16"}), ("int8", {"quantize": "int8"})):
            path = spec.to_onnx(Path(tmp) / f"{kind}.onnx", seed=3, **options)
            report[f"{kind}_bytes"] = path.stat().st_size
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outputs[kind] = session.run(None, feeds)
    for kind in ("float16", "int8"):
        errors, agree = [], []
        for ref, got in zip(outputs["float32"], outputs[kind]):
            ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
            errors.append(float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-6)) if ref.size else 0.0)
            if ref.ndim >= 2 and ref.shape[-1] > 1:
                agree.append(float((ref.argmax(-1) == got.argmax(-1)).mean()))
        report[f"{kind}_relative_error"] = max(errors)
        report[f"{kind}_argmax_agreement"] = min(agree) if agree else None
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
