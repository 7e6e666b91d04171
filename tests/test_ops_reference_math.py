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


# --- indexing -------------------------------------------------------------------------------

INDEXING = """
model Indexing {
  input x: float32[B, T, 8]
  input ids: int64[B, T]
  input y: int64[B, T]
  v, i = x |> topk(3)
  output values = v
  output indices = i
  s, j = x |> topk(2, axis = 1, largest = false)
  output small = s
  output small_at = j
  output picked = x |> take_along_axis(i, axis = -1)
  output rows = x |> gather(ids, axis = 1)
  output cols = x |> index_select(j |> flatten(0), axis = 2)
  output best = x |> argmax
  output worst = x |> argmin(axis = 1, keepdim)
  output hot = y |> one_hot(8)
  output soft = y |> one_hot(8, dtype = "float32")
}
"""


@pytest.mark.parametrize("opset", [23, 17])
def test_indexing_matches_torch(opset: int):
    x = randn(2, 5, 8)
    ids = np.random.default_rng(3).integers(-5, 5, (2, 5)).astype(np.int64)  # negative ids count from the end
    y = np.random.default_rng(4).integers(0, 8, (2, 5)).astype(np.int64)
    outs = run(INDEXING, {"x": x, "ids": ids, "y": y}, opset=opset)
    tx, tids, ty = torch.from_numpy(x), torch.from_numpy(ids), torch.from_numpy(y)
    values, indices = torch.topk(tx, 3)
    small, small_at = torch.topk(tx, 2, dim=1, largest=False)
    close(outs, "values", values)
    close(outs, "indices", indices)
    close(outs, "small", small)
    close(outs, "small_at", small_at)
    close(outs, "picked", torch.gather(tx, -1, indices))
    close(outs, "rows", tx[:, tids])
    close(outs, "cols", torch.index_select(tx, 2, small_at.flatten()))
    close(outs, "best", tx.argmax(-1))
    close(outs, "worst", tx.argmin(1, keepdim=True))
    close(outs, "hot", F.one_hot(ty, 8))
    close(outs, "soft", F.one_hot(ty, 8).float())


# --- layout: pad, roll, flip, triangles, repeat_interleave ---------------------------------

PADS = [
    ((1, 2), "constant", 0.0),
    ((1, 1, 2, 0), "constant", -1.5),
    ((0, 0, 0, 0, 1, 1), "constant", 3.0),
    ((2, 3), "reflect", 0.0),
    ((1, 2, 3, 1), "reflect", 0.0),
    ((1, 1, 1, 1, 1, 1), "reflect", 0.0),
    ((2, 1), "replicate", 0.0),
    ((0, 2, 1, 1), "replicate", 0.0),
    ((2, 0, 1, 2, 1, 1), "replicate", 0.0),
    ((2, 3), "circular", 0.0),
    ((1, 2, 2, 1), "circular", 0.0),
    ((1, 0, 2, 1, 1, 1), "circular", 0.0),
]


@pytest.mark.parametrize("opset", [23, 18, 17])
@pytest.mark.parametrize(("pad", "mode", "value"), PADS)
def test_pad_matches_f_pad(pad: tuple, mode: str, value: float, opset: int):
    shape = (2, 3, 4, 5, 6)[: len(pad) // 2 + 2]  # a batch and channels before the padded axes, as F.pad wants
    dims = ", ".join(["B", "C", "D", "H", "W"][: len(shape)])
    src = f'model M {{\n input x: float32[{dims}]\n output y = x |> pad({pad}, mode = "{mode}", value = {value})\n}}\n'
    x = randn(*shape)
    close(run(src, {"x": x}, opset=opset), "y", F.pad(torch.from_numpy(x), pad, mode=mode, **({"value": value} if mode == "constant" else {})))


def test_pad_shape_is_symbolic_and_errors_point_at_the_call():
    spec = flashc.loads("model M {\n input x: float32[B, T]\n output y = x |> pad((1, 2))\n}\n")
    assert spec.outputs == {"y": "float32[B, T + 3]"}
    assert "pads the last 1 to 3 axes" in errors('model M {\n input x: float32[B, T]\n output y = x |> pad((1, 1, 1, 1), mode = "reflect")\n}\n')
    assert "reflect padding 4 must be less than the axis size 4" in errors(
        'model M {\n input x: float32[B, 3, 4]\n output y = x |> pad((4, 0), mode = "reflect")\n}\n')
    assert "(before, after) pairs" in errors("model M {\n input x: float32[B, T]\n output y = x |> pad((1, 2, 3))\n}\n")


LAYOUT = """
model Layout {
  input x: float32[B, T, 6]
  output r1 = x |> roll(2, axis = 1)
  output r2 = x |> roll((-1, 8), axis = (1, 2))
  output f1 = x |> flip(1)
  output f2 = x |> flip((0, 2))
  output lo = x |> tril
  output up = x |> triu(1)
  output lo2 = x |> tril(-2)
  output rep = x |> repeat_interleave(3, axis = 1)
  output rep0 = x |> repeat_interleave(2)
}
"""


@pytest.mark.parametrize("opset", [23, 17])
def test_layout_matches_torch(opset: int):
    x = randn(2, 5, 6)
    outs = run(LAYOUT, {"x": x}, opset=opset)
    tx = torch.from_numpy(x)
    want = {
        "r1": torch.roll(tx, 2, 1), "r2": torch.roll(tx, (-1, 8), (1, 2)), "f1": tx.flip(1), "f2": tx.flip((0, 2)),
        "lo": tx.tril(), "up": tx.triu(1), "lo2": tx.tril(-2), "rep": tx.repeat_interleave(3, 1),
        "rep0": tx.repeat_interleave(2, 0),
    }
    for name, value in want.items():
        close(outs, name, value)
    assert flashc.loads(LAYOUT).outputs["rep"] == "float32[B, T * 3, 6]"


# --- einsum -------------------------------------------------------------------------------

EINSUMS = [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij,jk,kl", [(3, 4), (4, 5), (5, 2)]),
    ("...d,de->...e", [(2, 3, 4), (4, 6)]),
    ("bi,bj->bij", [(2, 3), (2, 4)]),
    ("bii->bi", [(2, 4, 4)]),
    ("bij->", [(2, 3, 4)]),
    ("i,i", [(5,), (5,)]),
    ("ba...,b...->ab...", [(2, 3, 4, 5), (2, 1, 5)]),
]


@pytest.mark.parametrize(("equation", "shapes"), EINSUMS)
def test_einsum_matches_torch(equation: str, shapes: list[tuple[int, ...]]):
    names = [f"x{i}" for i in range(len(shapes))]
    decls = "\n".join(f" input {n}: float32[{', '.join(map(str, s))}]" for n, s in zip(names, shapes))
    src = f'model M {{\n{decls}\n output y = einsum("{equation}", {", ".join(names)})\n}}\n'
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    want = torch.einsum(equation, *(torch.from_numpy(a) for a in arrays))
    close(run(src, dict(zip(names, arrays))), "y", want)


def test_einsum_infers_symbolic_shapes():
    src = """
model M(heads = 4) {
  input q: float32[B, T, heads, 8]
  input k: float32[B, S, heads, 8]
  output scores = einsum("bqhd,bkhd->bhqk", q, k)
  output pooled = einsum("b...d->bd", q)
}
"""
    assert flashc.loads(src).outputs == {"scores": "float32[B, 4, T, S]", "pooled": "float32[B, 8]"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('einsum("ij,jk->ik", a, a)', "einsum letter 'j' is 4 in one place and 3 in another"),
        ('einsum("ij->ik", a)', "einsum output letter 'k' is not in any input"),
        ('einsum("ijk->i", a)', "einsum term 'ijk' names 3 axes"),
        ('einsum("ij,jk->ik", a)', "has 2 operand(s), got 1 tensor(s)"),
        ('einsum("i2->i", a)', "has a bad term 'i2'"),
        ('einsum("ij->ii", a)', "names a letter twice"),
    ],
)
def test_einsum_errors(call: str, message: str):
    assert message in errors(f"model M {{\n input a: float32[3, 4]\n output y = {call}\n}}\n")


# --- statistics ------------------------------------------------------------------------------

STATS = """
model Stats {
  input x: float32[B, T, 6]
  input n: int64[B, T]
  output c = x |> cumsum(axis = 1)
  output ci = n |> cumsum
  output l = x |> logsumexp
  output lk = x |> logsumexp(axis = 1, keepdim)
  output v = x |> var
  output v0 = x |> var(axis = 1, correction = 0, keepdim)
  output vu = x |> var(unbiased = false)
  output s = x |> std(axis = 1)
  output s0 = x |> std(correction = 0)
  output n2 = x |> normalize
  output n1 = x |> normalize(p = 1, axis = 1)
  output n3 = x |> normalize(p = 3, eps = 0.5)
}
"""


@pytest.mark.parametrize("opset", [23, 17])
def test_statistics_match_torch(opset: int):
    x = randn(2, 5, 6) * 20  # logsumexp of large values stays finite only when computed stably
    n = np.random.default_rng(2).integers(-9, 9, (2, 5)).astype(np.int64)
    outs = run(STATS, {"x": x, "n": n}, opset=opset)
    tx, tn = torch.from_numpy(x), torch.from_numpy(n)
    want = {
        "c": torch.cumsum(tx, 1), "ci": torch.cumsum(tn, -1), "l": torch.logsumexp(tx, -1),
        "lk": torch.logsumexp(tx, 1, keepdim=True), "v": torch.var(tx, -1),
        "v0": torch.var(tx, 1, correction=0, keepdim=True), "vu": torch.var(tx, -1, unbiased=False),
        "s": torch.std(tx, 1), "s0": torch.std(tx, -1, correction=0), "n2": F.normalize(tx, dim=-1),
        "n1": F.normalize(tx, p=1, dim=1), "n3": F.normalize(tx, p=3, dim=-1, eps=0.5),
    }
    for name, value in want.items():
        scale = max(1.0, float(value.abs().max()))
        for backend, out in zip(("torch", "onnx"), outs):
            np.testing.assert_allclose(out[name], value.numpy(), rtol=0, atol=TOL * scale, err_msg=f"{backend} {name}")
            assert out[name].dtype == value.numpy().dtype


def test_statistics_errors():
    assert "takes `correction` or `unbiased`, not both" in errors(
        "model M {\n input x: float32[B, 4]\n output y = x |> var(correction = 0, unbiased = true)\n}\n")
    assert "divides by zero or less" in errors("model M {\n input x: float32[B, 1]\n output y = x |> std\n}\n")
    assert "`cumsum` needs a float32/64 or int32/64 tensor" in errors("model M {\n input x: bool[B, 4]\n output y = x |> cumsum\n}\n")
