"""Math, indexing and constant ops against torch itself, through tiny specs.

Each test writes a .flash spec, compiles it to PyTorch and to ONNX, runs both,
and compares every output with the torch function a user would otherwise have
called (torch.topk, F.pad, torch.einsum, ...), to 1e-5.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import flashc
from flashc import FlashError

TOL = 1e-5


def run(src: str, feeds: dict[str, np.ndarray], opset: int = 23, **overrides) -> list[dict[str, np.ndarray]]:
    """Outputs by name from the PyTorch module and from onnxruntime."""
    spec = flashc.loads(src, **overrides)
    names = list(spec.outputs)
    module = spec.to_torch(seed=0).eval()
    with torch.no_grad():
        got = module(*(torch.from_numpy(feeds[n].copy()) for n in spec.inputs))
    got = got if isinstance(got, tuple) else (got,)
    torch_out = {n: t.numpy() for n, t in zip(names, got)}
    sess = ort.InferenceSession(spec.to_onnx(seed=0, opset=opset).SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_out = dict(zip(names, sess.run(names, {n: feeds[n] for n in spec.inputs})))
    return [torch_out, onnx_out]


def close(outs: list[dict[str, np.ndarray]], name: str, want: torch.Tensor) -> None:
    for backend, out in zip(("torch", "onnx"), outs):
        got = out[name]
        assert got.shape == tuple(want.shape), f"{backend} {name}: {got.shape} != {tuple(want.shape)}"
        assert str(got.dtype) == str(want.dtype).removeprefix("torch."), f"{backend} {name}: {got.dtype} vs {want.dtype}"
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=TOL, err_msg=f"{backend} {name}")


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def errors(src: str) -> str:
    with pytest.raises(FlashError) as exc:
        flashc.loads(src)
    return str(exc.value)


# --- math -----------------------------------------------------------------------------------

MATH = """
model Math {
  input x: float32[B, 6]
  input p: float32[B, 6]
  output e = x |> exp
  output l = p |> log
  output s = p |> sqrt
  output r = p |> rsqrt
  output a = x |> abs
  output si = x |> sin
  output co = x |> cos
  output er = x |> erf
  output re = p |> reciprocal
  output sq = x |> pow(2)
  output pt = pow(p, x)
  output two = pow(x, base = 2)
  output c = x |> clamp(-0.5, 0.5)
  output lo = x |> clamp(min = 0.1)
  output r6 = (x * 4) |> relu6
  output ht = x |> hardtanh(-0.3, 0.7)
}
"""


def test_math_ops_match_torch():
    x = randn(3, 6)
    p = np.abs(randn(3, 6, seed=1)) + 0.5
    outs = run(MATH, {"x": x, "p": p})
    tx, tp = torch.from_numpy(x), torch.from_numpy(p)
    want = {
        "e": tx.exp(), "l": tp.log(), "s": tp.sqrt(), "r": tp.rsqrt(), "a": tx.abs(), "si": tx.sin(),
        "co": tx.cos(), "er": torch.erf(tx), "re": tp.reciprocal(), "sq": tx**2, "pt": tp**tx, "two": 2.0**tx,
        "c": tx.clamp(-0.5, 0.5), "lo": tx.clamp(min=0.1), "r6": F.relu6(tx * 4), "ht": F.hardtanh(tx, -0.3, 0.7),
    }
    for name, value in want.items():
        close(outs, name, value)


def test_int_abs_and_clamp_keep_the_dtype():
    src = "model M {\n input i: int64[B, 5]\n output a = i |> abs\n output c = i |> clamp(-1, 2)\n}\n"
    i = np.array([[-3, -1, 0, 2, 7]] * 2, dtype=np.int64)
    outs = run(src, {"i": i})
    close(outs, "a", torch.from_numpy(i).abs())
    close(outs, "c", torch.from_numpy(i).clamp(-1, 2))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("output y = i |> exp", "`exp` needs a float tensor, got int64[B, 5]"),
        ("output y = i |> clamp(0.5)", "needs whole-number bounds, got 0.5"),
        ("output y = x |> clamp", "`clamp` needs `min`, `max` or both"),
        ("output y = x |> clamp(2, 1)", "`clamp` needs min <= max"),
        ("output y = x |> hardtanh(1, -1)", "`hardtanh` needs min_val < max_val"),
        ("output y = pow(x, x, exponent = 2)", "`pow` needs exactly one of"),
        ("output y = x |> pow", "`pow` needs exactly one of"),
        ("output y = i |> pow(2)", "`pow` needs float tensors"),
    ],
)
def test_math_errors_are_reported_at_the_call(body: str, message: str):
    text = errors(f"model M {{\n input x: float32[B, 5]\n input i: int64[B, 5]\n {body}\n}}\n")
    assert message in text
    assert "<string>:4:" in text
