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
from flashc.ops import REGISTRY

TOL = 1e-5


def run(src: str, feeds: dict[str, np.ndarray], opset: int = 23, **overrides) -> list[dict[str, np.ndarray]]:
    """Outputs by name from the PyTorch module and from onnxruntime."""
    spec = flashc.loads(src, **overrides)
    names = list(spec.outputs)
    module = spec.to_torch(seed=0).eval()
    with torch.no_grad():
        got = module(*(torch.from_numpy(feeds[n].copy()) for n in spec.inputs))
    got = got if isinstance(got, tuple) else (got,)
    torch_out = {n: t.detach().numpy() for n, t in zip(names, got)}
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
  output soft = y |> one_hot(8, dtype = float32)
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


# --- constants, positions, sinusoidal tables, parameter init ---------------------------------


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's `sinusoids` (openai/whisper, model.py), copied."""
    log_timescale_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, np.newaxis] * inv_timescales[np.newaxis, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


def transformer_table(length: int, d: int) -> torch.Tensor:
    """The Transformer paper's table as the PyTorch tutorial builds it (sin at even columns, cos at odd)."""
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2) * (-np.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


CONSTANTS = """
model Constants(d = 16) {
  input mel: float32[B, 3, L]
  h = mel |> conv1d(d, 3, stride = 2, padding = 1) |> transpose(1, 2)
  output ids = positions((L - 1) // 2 + 1)
  output audio = h + sinusoidal((L - 1) // 2 + 1, d, layout = "halves")
  output paper = sinusoidal(L, d)
  output h0 = zeros(B, d)
  output mask = ones(L, L, dtype = bool) |> tril
  output half = full(B, 2, value = 0.5)
  output count = arange(L)
  output odd = arange(L, start = 1, step = 2, dtype = float32)
}
"""


@pytest.mark.parametrize("opset", [23, 17])
def test_constants_follow_symbolic_sizes(opset: int):
    spec = flashc.loads(CONSTANTS)
    assert spec.outputs["ids"] == "int64[(L - 1) // 2 + 1]"
    assert spec.outputs["audio"] == "float32[B, (L - 1) // 2 + 1, 16]"
    assert spec.outputs["h0"] == "float32[B, 16]" and spec.outputs["odd"] == "float32[L // 2]"
    for batch, length in ((2, 11), (3, 40)):
        mel = randn(batch, 3, length)
        outs = run(CONSTANTS, {"mel": mel}, opset=opset)
        frames = (length - 1) // 2 + 1
        close(outs, "ids", torch.arange(frames))
        close(outs, "paper", transformer_table(length, 16))
        close(outs, "h0", torch.zeros(batch, 16))
        close(outs, "mask", torch.ones(length, length, dtype=torch.bool).tril())
        close(outs, "half", torch.full((batch, 2), 0.5))
        close(outs, "count", torch.arange(length))
        close(outs, "odd", torch.arange(1, length, 2, dtype=torch.float32))
        conv = spec.to_torch(seed=0).conv1d
        with torch.no_grad():
            want = conv(torch.from_numpy(mel)).transpose(1, 2) + whisper_sinusoids(frames, 16)
        close(outs, "audio", want)


def test_sinusoidal_tables_equal_whisper_and_the_paper_at_length_1500():
    src = 'model M {\n input x: float32[B, T, 384]\n output w = sinusoidal(T, 384, layout = "halves")\n output p = sinusoidal(T, 384)\n}\n'
    outs = run(src, {"x": randn(1, 1500, 384)})
    # float32 angles reach 1500 rad, so one ulp of a frequency moves a sine by ~1e-4: compare at 2e-4
    for backend, out in zip(("torch", "onnx"), outs):
        np.testing.assert_allclose(out["w"], whisper_sinusoids(1500, 384).numpy(), atol=2e-4, rtol=0, err_msg=backend)
        np.testing.assert_allclose(out["p"], transformer_table(1500, 384).numpy(), atol=2e-4, rtol=0, err_msg=backend)
    np.testing.assert_allclose(outs[0]["w"][:100], whisper_sinusoids(100, 384).numpy(), atol=TOL, rtol=0)


def test_positions_of_a_symbolic_expression_feed_an_embedding():
    src = """
model M(d = 8) {
  input x: float32[B, 4, L]
  h = x |> conv1d(d, 3, stride = 2, padding = 1) |> transpose(1, 2)
  output y = h + embedding(64, d)(positions((L - 1) // 2 + 1))
}
"""
    spec = flashc.loads(src)
    assert spec.outputs == {"y": "float32[B, (L - 1) // 2 + 1, 8]"}
    x = randn(2, 4, 9)
    outs = run(src, {"x": x})
    np.testing.assert_allclose(outs[0]["y"], outs[1]["y"], atol=TOL, rtol=0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("output y = zeros(B, Q)", "undefined name `Q`"),
        ("output y = zeros(x, 3)", "`zeros` takes no tensor"),
        ('output y = sinusoidal(T, 7)', "needs an even dim"),
        ('output y = full(B, 2, value = 0.5, dtype = int64)', "needs a whole-number value"),
        ("output y = arange(3, start = 5)", "is empty"),
        ("output y = positions(0)", "positions needs a length >= 1"),
        ("output y = arange(T, source_axes = 1)", "`arange` has no argument `source_axes`"),
    ],
)
def test_constant_errors(body: str, message: str):
    assert message in errors(f"model M {{\n input x: float32[B, T]\n {body}\n}}\n")


PARAMETER_INITS = """
model M(d = 6) {
  input x: float32[B, 6]
  g = parameter(d, init = "ones")
  z = parameter(d, init = "zeros")
  s = parameter(1, d, init = "constant", value = 1e-6)
  u = parameter(2, d, init = "uniform", lower = -0.5, upper = 0.25)
  n = parameter(200, d, init = "normal", std = 0.5)
  output y = x * g + z + s
  output a = u
  output b = n
}
"""


def test_parameter_inits():
    spec = flashc.loads(PARAMETER_INITS)
    w = spec.init_weights(seed=0)
    assert (w["g.weight"] == 1).all() and (w["z.weight"] == 0).all()
    assert (w["s.weight"] == np.float32(1e-6)).all()
    assert w["u.weight"].min() >= -0.5 and w["u.weight"].max() < 0.25 and w["u.weight"].std() > 0.05
    assert abs(float(w["n.weight"].std()) - 0.5) < 0.05
    model = spec.to_torch(seed=0)
    assert torch.equal(model.g.weight, torch.ones(6))
    x = randn(2, 6)
    close(run(PARAMETER_INITS, {"x": x}), "y", torch.from_numpy(x) + 1e-6)
    assert "needs lower < upper" in errors('model M {\n input x: float32[B]\n output y = parameter(2, init = "uniform", lower = 1, upper = 0)\n}\n')
    assert "must be one of" in errors('model M {\n input x: float32[B]\n output y = parameter(2, init = "twos")\n}\n')


# --- every documented example builds ---------------------------------------------------------

EXAMPLE_OPS = sorted(
    {cls for cls in REGISTRY.values() if cls.__module__.rsplit(".", 1)[-1] in
     ("math", "indexing", "layout", "einsum", "statistics", "constants", "embedding", "tensor")
     and cls.__dict__.get("examples")},
    key=lambda cls: cls.name,
)


@pytest.mark.parametrize("cls", EXAMPLE_OPS, ids=lambda cls: cls.name)
def test_documented_examples_build(cls):
    """Each example of docs/language.md compiles, in a model with the inputs the examples assume."""
    for call, _ in cls.examples:
        several = cls.name == "topk"
        body = f"v, i = {call}\n  output y = v" if several else f"output y = {call}"
        src = ("model Example {\n  input x: float32[B, T, 64]\n  input ids: int64[B, T]\n"
               f"  input img: float32[B, 3, 32, 32]\n  input mel: float32[B, 80, L]\n  {body}\n}}\n")
        spec = flashc.loads(src)
        assert spec.to_onnx() is not None, call


def test_indices_must_be_int64_with_a_hint():
    text = errors("model M {\n input x: float32[B, 4]\n input f: float32[B]\n output y = x |> gather(f)\n}\n")
    assert "`gather` input `index` must be int64, got float32[B]" in text and "cast(..., int64)" in text
    text = errors("model M {\n input x: float32[B, 4]\n input i: int32[B, 4]\n output y = x |> take_along_axis(i)\n}\n")
    assert "must be int64, got int32[B, 4]" in text
    assert "`one_hot` input `x` must be int64" in errors("model M {\n input x: float32[B]\n output y = x |> one_hot(3)\n}\n")
    assert "`topk` needs a float or int32/int64 tensor, got bool[B, 4]" in errors(
        "model M {\n input m: bool[B, 4]\n a, b = m |> topk(2)\n output y = a\n}\n")


def test_constants_are_made_on_the_device_of_the_inputs():
    """A fixed-size constant follows the model's first input too (meta stands in for a GPU here)."""
    src = """
model M {
  input x: float32[B, T, 4]
  output a = x + zeros(1, 4)
  output b = positions(7)
  output c = sinusoidal(5, 4)
  output d = ones(T, T, dtype = bool) |> tril
  output e = arange(T, dtype = float32)
  output f = full(B, 2, value = 3)
}
"""
    module = flashc.loads(src).to_torch()
    outs = module(torch.zeros(2, 3, 4, device="meta"))
    assert [o.device.type for o in outs] == ["meta"] * 6
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4), (7,), (5, 4), (3, 3), (3,), (2, 2)]


def test_slice_to_a_dimension_expression():
    src = """
model M(ctx = 64, d = 4) {
  input x: float32[B, T, 4]
  output half = x |> slice(0, (T - 1) // 2 + 1, axis = 1)
  output table = parameter(1, ctx, d) |> slice(1, T + 1, axis = 1)
}
"""
    spec = flashc.loads(src)
    assert spec.outputs == {"half": "float32[B, (T - 1) // 2 + 1, 4]", "table": "float32[1, T, 4]"}
    x = randn(2, 7, 4)
    outs = run(src, {"x": x})
    close(outs, "half", torch.from_numpy(x)[:, :4])
    table = spec.to_torch(seed=0).parameter.weight.detach()
    close(outs, "table", table[:, 1:8])
