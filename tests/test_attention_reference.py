"""flashc's `attention` against torch.nn.MultiheadAttention with the same weights.

Each case is a .flash spec; nn.MultiheadAttention(batch_first=True)'s weights are
mapped into the spec's state-dict names (in_proj splits into q, k, v rows in that
order; out_proj is `out`) and both the generated torch module and the ONNX model
(onnxruntime, CPU) must reproduce the reference output, the ONNX model at two
batch sizes and sequence lengths.
"""

from __future__ import annotations

import numpy as np
import pytest

import flashc

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

ATOL = 1e-5
SHAPES = ((2, 5), (3, 7))  # (batch, query length) for the two runs
OPSETS = (23, 17)  # the fused ONNX Attention op, and its decomposition for older runtimes


def spec_for(call: str, width: int, *, padding: bool = False, kv_width: int | None = None):
    lines = [f"  input x: float32[B, T, {width}]"]
    if kv_width is not None:
        lines.append(f"  input mem: float32[B, S, {kv_width}]")
    if padding:
        lines.append(f"  input pad: bool[B, {'S' if kv_width is not None else 'T'}]")
    text = "model Attn() {\n" + "\n".join(lines) + f"\n  output y = {call}\n}}\n"
    return flashc.loads(text)


def reference(width: int, heads: int, *, kdim: int | None = None, bias: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(width, heads, batch_first=True, bias=bias, kdim=kdim, vdim=kdim).eval()
    with torch.no_grad():  # nonzero biases, so a dropped or misplaced bias shows
        for name, p in mha.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return mha


def flashc_weights(mha, prefix: str = "attention") -> dict[str, np.ndarray]:
    """nn.MultiheadAttention's parameters under flashc's names."""
    sd = {k: v.detach().numpy() for k, v in mha.state_dict().items()}
    e = mha.embed_dim
    if "in_proj_weight" in sd:
        weights = dict(zip("qkv", np.split(sd["in_proj_weight"], 3)))
    else:
        weights = {p: sd[f"{p}_proj_weight"] for p in "qkv"}
    out = {f"{prefix}.{p}.weight": w for p, w in weights.items()}
    out[f"{prefix}.out.weight"] = sd["out_proj.weight"]
    if "in_proj_bias" in sd:
        out.update({f"{prefix}.{p}.bias": b for p, b in zip("qkv", np.split(sd["in_proj_bias"], 3))})
        out[f"{prefix}.out.bias"] = sd["out_proj.bias"]
    assert all(w.shape[0] == e for w in out.values())
    return out


def padding_mask(rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    """True = padding: key 0 is never padded (so no causal row is empty), the last key always."""
    pad = rng.random((batch, length)) < 0.4
    pad[:, 0] = False
    pad[:, -1] = True
    return pad


def run_reference(mha, x, kv=None, pad=None, causal=False) -> np.ndarray:
    t = torch.from_numpy
    kv = x if kv is None else kv
    mask = None
    if causal and pad is None:
        mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1])  # float, -inf above the diagonal
    elif causal:  # a bool mask (True = masked), the same kind as key_padding_mask
        mask = torch.ones(x.shape[1], kv.shape[1], dtype=torch.bool).triu(1)
    with torch.no_grad():
        y, _ = mha(t(x), t(kv), t(kv), key_padding_mask=None if pad is None else t(pad), attn_mask=mask,
                   need_weights=False)
    return y.numpy()


def check(spec, mha, *, cross_len=None, kv_width=None, padding=False, causal=False, seed=0) -> None:
    weights = flashc_weights(mha)
    assert set(weights) == set(spec.graph.weights), sorted(spec.graph.weights)
    module = spec.to_torch(weights=weights).eval()
    sessions = {
        opset: ort.InferenceSession(spec.to_onnx(weights=weights, opset=opset).SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        for opset in OPSETS
    }
    rng = np.random.default_rng(seed)
    width = mha.embed_dim
    for batch, length in SHAPES:
        x = rng.standard_normal((batch, length, width)).astype(np.float32)
        feeds = {"x": x}
        kv = None
        if kv_width is not None:
            kv = rng.standard_normal((batch, cross_len(length), kv_width)).astype(np.float32)
            feeds["mem"] = kv
        pad = None
        if padding:
            pad = padding_mask(rng, batch, (kv if kv is not None else x).shape[1])
            feeds["pad"] = pad
        want = run_reference(mha, x, kv, pad, causal)
        assert np.isfinite(want).all()
        with torch.no_grad():
            got = module(*(torch.from_numpy(feeds[name]) for name in spec.inputs)).numpy()
        where = f"batch {batch}, length {length}"
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=f"torch, {where}")
        for opset, session in sessions.items():
            (onnx_out,) = session.run(["y"], feeds)
            np.testing.assert_allclose(onnx_out, want, rtol=0, atol=ATOL, err_msg=f"onnx opset {opset}, {where}")


@pytest.mark.parametrize(("width", "heads", "bias"), [(8, 2, True), (16, 4, True), (12, 3, False)])
def test_self_attention(width: int, heads: int, bias: bool) -> None:
    extra = "" if bias else ", bias = false"
    spec = spec_for(f"x |> attention({heads}{extra})", width)
    check(spec, reference(width, heads, bias=bias))


@pytest.mark.parametrize(("width", "heads"), [(8, 2), (16, 4)])
def test_causal(width: int, heads: int) -> None:
    spec = spec_for(f"x |> attention({heads}, causal)", width)
    check(spec, reference(width, heads, seed=1), causal=True, seed=1)


def test_causal_matches_a_boolean_mask_with_is_causal() -> None:
    """The same reference, asked with a bool upper-triangular mask and is_causal."""
    mha = reference(8, 2, seed=2)
    x = np.random.default_rng(2).standard_normal((2, 6, 8)).astype(np.float32)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1)
    with torch.no_grad():
        want, _ = mha(*(torch.from_numpy(x),) * 3, attn_mask=mask, is_causal=True, need_weights=False)
    spec = spec_for("attention(x, heads = 2, causal = true)", 8)
    with torch.no_grad():
        got = spec.to_torch(weights=flashc_weights(mha)).eval()(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(run_reference(mha, x, causal=True), want.numpy(), rtol=0, atol=ATOL)


def test_key_padding_mask() -> None:
    spec = spec_for("attention(x, heads = 2, key_padding_mask = pad)", 8, padding=True)
    check(spec, reference(8, 2, seed=3), padding=True, seed=3)


def test_causal_with_key_padding_mask() -> None:
    spec = spec_for("x |> attention(4, causal, key_padding_mask = pad)", 16, padding=True)
    check(spec, reference(16, 4, seed=4), padding=True, causal=True, seed=4)


def test_cross_attention_other_length() -> None:
    spec = spec_for("attention(x, mem, heads = 2)", 8, kv_width=8)
    check(spec, reference(8, 2, seed=5), kv_width=8, cross_len=lambda t: t + 3, seed=5)


def test_cross_attention_other_length_with_padding() -> None:
    spec = spec_for("attention(x, mem, heads = 2, key_padding_mask = pad)", 8, kv_width=8, padding=True)
    check(spec, reference(8, 2, seed=6), kv_width=8, cross_len=lambda t: 2 * t - 1, padding=True, seed=6)


@pytest.mark.parametrize("bias", [True, False])
def test_cross_attention_kdim_vdim(bias: bool) -> None:
    extra = "" if bias else ", bias = false"
    spec = spec_for(f"attention(x, mem, heads = 2{extra})", 8, kv_width=6)
    mha = reference(8, 2, kdim=6, bias=bias, seed=7)
    assert mha.in_proj_weight is None and mha.k_proj_weight.shape == (8, 6)
    check(spec, mha, kv_width=6, cross_len=lambda t: t - 2, seed=7)
