"""LSTM/GRU, tensor plumbing, scaled_dot_product, hard attention and VAE sampling, end to end.

Each case is a .flash spec lowered to torch and to ONNX (onnxruntime, CPU) and
checked against a torch reference with the same weights: nn.LSTM / nn.GRU for
the recurrent layers (weights copied from the reference), torch's own tensor
functions, a hand-written attention. Runs at two batch sizes and two sequence
lengths.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import flashc
from flashc.diagnostics import FlashError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

TORCH_ATOL = 1e-5
ONNX_ATOL = 1e-4
SHAPES = ((2, 5), (3, 9))  # (batch, sequence length)


def session(spec, weights, opset: int | None = None):
    model = spec.to_onnx(weights=weights, opset=opset)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_both(spec, weights, feeds: dict[str, np.ndarray], opset: int | None = None) -> tuple[list, list]:
    """The spec's outputs from the torch module (eval) and from onnxruntime."""
    module = spec.to_torch(weights=weights).eval()
    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[name]) for name in spec.inputs))
    got_torch = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    got_onnx = session(spec, weights, opset).run(list(spec.outputs), {k: feeds[k] for k in spec.inputs})
    return got_torch, got_onnx


def assert_close(got_torch: list, got_onnx: list, want: list, where: str) -> None:
    assert len(got_torch) == len(got_onnx) == len(want), where
    for i, (t, o, w) in enumerate(zip(got_torch, got_onnx, want)):
        assert t.shape == o.shape == w.shape, f"{where}, output {i}: {t.shape}, {o.shape}, want {w.shape}"
        np.testing.assert_allclose(t, w, rtol=0, atol=TORCH_ATOL, err_msg=f"{where}, output {i}, torch")
        np.testing.assert_allclose(o, w, rtol=0, atol=ONNX_ATOL, err_msg=f"{where}, output {i}, onnx")


def randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# --- LSTM and GRU against nn.LSTM / nn.GRU --------------------------------------------

RNN_CASES = [
    # kind, layers, bidirectional, bias, initial states given
    ("lstm", 2, True, True, ("h0", "c0")),
    ("lstm", 2, True, True, ()),
    ("lstm", 1, False, False, ("h0",)),
    ("lstm", 3, False, True, ("c0",)),
    ("gru", 2, True, True, ("h0",)),
    ("gru", 2, True, True, ()),
    ("gru", 1, False, False, ("h0",)),
]


def rnn_spec(kind: str, layers: int, bidirectional: bool, bias: bool, states: tuple[str, ...], feats: int, hidden: int):
    dirs = 2 if bidirectional else 1
    lines = [f"  input x: float32[B, T, {feats}]"]
    lines += [f"  input {s}: float32[{layers * dirs}, B, {hidden}]" for s in states]
    args = [str(hidden), f"layers = {layers}"] + (["bidirectional"] if bidirectional else [])
    args += [] if bias else ["bias = false"]
    args += [f"{s} = {s}" for s in states]
    outs = ["y", "h"] + (["c"] if kind == "lstm" else [])
    lines.append(f"  {', '.join(outs)} = x |> {kind}({', '.join(args)})")
    lines += [f"  output {o}" for o in outs]
    return flashc.loads("model Rnn() {\n" + "\n".join(lines) + "\n}\n")


@pytest.mark.parametrize("kind, layers, bidirectional, bias, states", RNN_CASES,
                         ids=lambda v: str(v) if not isinstance(v, tuple) else "+".join(v) or "zeros")
def test_recurrent_matches_torch(kind, layers, bidirectional, bias, states) -> None:
    feats, hidden = 6, 7
    spec = rnn_spec(kind, layers, bidirectional, bias, states, feats, hidden)
    torch.manual_seed(0)
    ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](
        feats, hidden, num_layers=layers, bias=bias, batch_first=True, bidirectional=bidirectional).eval()
    weights = {f"{kind}.{k}": v for k, v in ref.state_dict().items()}
    assert set(weights) == set(spec.graph.weights), "weight names differ from torch's"
    assert spec.parameter_count == sum(p.numel() for p in ref.parameters())

    dirs = 2 if bidirectional else 1
    module = spec.to_torch(weights=weights).eval()
    sess = session(spec, weights)
    rng = np.random.default_rng(1)
    for batch, steps in SHAPES:
        feeds = {"x": randn(rng, batch, steps, feats)}
        feeds.update({s: randn(rng, layers * dirs, batch, hidden) for s in states})
        t = {k: torch.from_numpy(v) for k, v in feeds.items()}
        with torch.no_grad():
            if kind == "gru":
                y, h = ref(t["x"], t.get("h0"))
                want = [y, h]
            else:
                zeros = torch.zeros(layers * dirs, batch, hidden)
                initial = (t.get("h0", zeros), t.get("c0", zeros)) if states else None
                y, (h, c) = ref(t["x"], initial)
                want = [y, h, c]
            got = module(*(t[name] for name in spec.inputs))
        want = [w.numpy() for w in want]
        got_onnx = sess.run(list(spec.outputs), feeds)
        assert_close([g.numpy() for g in got], got_onnx, want, f"{kind} batch {batch} steps {steps}")


def test_recurrent_source_and_shapes() -> None:
    spec = rnn_spec("lstm", 2, True, True, ("h0", "c0"), 6, 7)
    assert spec.outputs == {"y": "float32[B, T, 14]", "h": "float32[4, B, 7]", "c": "float32[4, B, 7]"}
    source = spec.torch_source()
    assert "LSTMLayer(6, 7, num_layers=2, bias=True, batch_first=True, bidirectional=True)" in source
    assert "y, h, c = self.lstm(x, h0=h0, c0=c0)" in source
    gru = rnn_spec("gru", 1, False, True, (), 6, 7)
    assert "y, h = self.gru(x)" in gru.torch_source()


def test_recurrent_errors() -> None:
    with pytest.raises(FlashError, match=r"initial state `h0` must be float32\[2, B, 7\]"):
        flashc.loads("model M() {\n  input x: float32[B, T, 6]\n  input h: float32[1, B, 7]\n"
                     "  y, s = x |> gru(7, layers = 2, h0 = h)\n  output y\n}\n")
    with pytest.raises(FlashError, match=r"lstm` expects a float sequence \[B, T, features\]"):
        flashc.loads("model M() {\n  input x: float32[B, 6]\n  y, h, c = x |> lstm(7)\n  output y\n}\n")


# --- tensor plumbing ----------------------------------------------------------------------

TENSOR_SPEC = """
model Plumbing(ctx = 16, d = 8) {
  input x: float32[B, T, 8]
  a, b = x |> split(3, 5)
  p, q, r = x |> chunk(3, axis = 2)
  pos = parameter(1, ctx, d) |> slice(0, T, axis = 1)
  output with_pos = x + pos
  output inner = x |> slice(1, -1, axis = 1)
  output last3 = x |> slice(-3, axis = 1)
  output odd = x |> slice(1, axis = -2, step = 2)
  output cols = x |> slice(2, 100, axis = 2)
  output b
  output r
  output total = x |> sum(1)
  output top = x |> max(axis = -1, keepdim = true)
  output low = x |> min(axis = 0)
  output prod = matmul(a, a |> transpose(1, 2))
}
"""


def test_tensor_ops_match_torch() -> None:
    spec = flashc.loads(TENSOR_SPEC)
    assert spec.outputs["inner"] == "float32[B, T - 2, 8]"
    assert spec.outputs["odd"] == "float32[B, T // 2, 8]"
    assert spec.outputs["with_pos"] == "float32[B, T, 8]"
    assert spec.graph.weights["parameter.weight"].spec.init == ("normal", 0.02)
    weights = spec.init_weights(seed=3)
    table = torch.from_numpy(weights["parameter.weight"])
    rng = np.random.default_rng(0)
    for batch, steps in SHAPES:
        x = randn(rng, batch, steps, 8)
        t = torch.from_numpy(x)
        a, b = torch.split(t, [3, 5], dim=-1)
        want = [
            t + table[:, :steps], t[:, 1:-1], t[:, -3:], t[:, 1::2], t[:, :, 2:], b, t[:, :, 6:],
            t.sum(1), t.amax(-1, keepdim=True), t.amin(0), a @ a.transpose(1, 2),
        ]
        got_torch, got_onnx = run_both(spec, weights, {"x": x})
        assert_close(got_torch, got_onnx, [w.numpy() for w in want], f"batch {batch} steps {steps}")


def test_parameter_is_a_learned_weight() -> None:
    spec = flashc.loads("model P(d = 8) {\n  input x: float32[B, 1, 8]\n"
                        "  cls = parameter(1, 1, d, init = \"zeros\")\n  output y = x + cls\n}\n")
    assert spec.parameter_count == 8
    assert spec.graph.weights["cls.weight"].spec.init == ("zeros",)
    module = spec.to_torch()
    names = dict(module.named_parameters())
    assert list(names) == ["cls.weight"] and names["cls.weight"].requires_grad
    x = np.ones((2, 1, 8), np.float32)
    weights = {"cls.weight": np.arange(8, dtype=np.float32).reshape(1, 1, 8)}
    got_torch, got_onnx = run_both(spec, weights, {"x": x})
    assert_close(got_torch, got_onnx, [x + weights["cls.weight"]], "parameter")


@pytest.mark.parametrize("call, message", [
    ("split(3, 4)", r"split sizes \[3, 4\] must be positive and add up to 8"),
    ("chunk(3, axis = 1)", r"chunk` needs a fixed size along axis 1"),
    ("chunk(5)", r"chunk\(5\) of an axis of size 8 gives 4 parts"),
    ("slice(-2, 3, axis = 1)", r"cannot tell the length of slice\(-2, 3\)"),
    ("slice(0, 2, step = 0)", r"slice step must be >= 1"),
])
def test_tensor_op_errors(call: str, message: str) -> None:
    with pytest.raises(FlashError, match=message):
        flashc.loads(f"model M() {{\n  input x: float32[B, T, 8]\n  a, b = x |> {call}\n  output a\n}}\n")


# --- scaled_dot_product -----------------------------------------------------------------------

def attend(q, k, v, keep=None, causal=False, scale=None) -> np.ndarray:
    """softmax(q k^T * scale) v by hand; `keep` true = attend."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    scores = (torch.from_numpy(q) @ torch.from_numpy(k).transpose(-2, -1)).double() * scale
    allowed = torch.ones(scores.shape, dtype=torch.bool)
    if keep is not None:
        allowed = allowed & torch.from_numpy(keep)
    if causal:
        allowed = allowed & torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return (probs @ torch.from_numpy(v).double()).float().numpy()


@pytest.mark.parametrize("opset", [23, 17])
def test_scaled_dot_product(opset: int) -> None:
    spec = flashc.loads("""
model Sdp() {
  input q: float32[B, 2, T, 4]
  input k: float32[B, 2, S, 4]
  input v: float32[B, 2, S, 3]
  input m: bool[B, 1, T, S]
  input q1: float32[B, T, 4]
  output plain = scaled_dot_product(q, k, v)
  output masked = scaled_dot_product(q, k, v, mask = m, scale = 0.7)
  output causal_masked = scaled_dot_product(q, k, v, m, causal)
  output one_head = scaled_dot_product(q1, q1, q1, causal)
}
""")
    assert spec.outputs["plain"] == "float32[B, 2, T, 3]"
    rng = np.random.default_rng(opset)
    for batch, steps in SHAPES:
        keys = steps + 2
        q, k, v = randn(rng, batch, 2, steps, 4), randn(rng, batch, 2, keys, 4), randn(rng, batch, 2, keys, 3)
        m = rng.random((batch, 1, steps, keys)) < 0.6
        m[..., 0] = True  # every query keeps a key, also under the causal mask
        q1 = randn(rng, batch, steps, 4)
        feeds = {"q": q, "k": k, "v": v, "m": m, "q1": q1}
        want = [attend(q, k, v), attend(q, k, v, m, scale=0.7), attend(q, k, v, m, causal=True),
                attend(q1, q1, q1, causal=True)]
        got_torch, got_onnx = run_both(spec, None, feeds, opset)
        assert_close(got_torch, got_onnx, want, f"batch {batch} steps {steps} opset {opset}")


def test_scaled_dot_product_errors() -> None:
    with pytest.raises(FlashError, match=r"mask \[T, 3\] does not broadcast to the scores \[B, T, S\]"):
        flashc.loads("model M() {\n  input q: float32[B, T, 4]\n  input k: float32[B, S, 4]\n  input m: bool[T, 3]\n"
                     "  output y = scaled_dot_product(q, k, k, m)\n}\n")
    with pytest.raises(FlashError, match=r"do not fit"):
        flashc.loads("model M() {\n  input q: float32[B, T, 4]\n  input k: float32[B, S, 5]\n"
                     "  output y = scaled_dot_product(q, k, k)\n}\n")


# --- hard attention: discrete forward, straight-through gradient -------------------------------

def hard_spec(call: str, padding: bool = False):
    pad = "\n  input pad: bool[B, T]" if padding else ""
    return flashc.loads(f"model Hard() {{\n  input x: float32[B, T, 8]{pad}\n  output y = x |> {call}\n}}\n")


def hard_reference(x: np.ndarray, w: dict[str, torch.Tensor], prefix: str, heads: int, top_k: int,
                   causal: bool = False, pad: np.ndarray | None = None, straight_through: bool = False,
                   soft: bool = False) -> torch.Tensor:
    """Hand-written multi-head attention keeping each query's top_k keys (argsort, not topk)."""
    t = torch.from_numpy(x)
    batch, steps, width = x.shape
    dh = width // heads

    def proj(name: str, src: torch.Tensor) -> torch.Tensor:
        return src @ w[f"{prefix}.{name}.weight"].T + w[f"{prefix}.{name}.bias"]

    def split(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(batch, steps, heads, dh).permute(0, 2, 1, 3)

    q, k, v = split(proj("q", t)), split(proj("k", t)), split(proj("v", t))
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
    allowed = torch.ones(steps, steps, dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    allowed = allowed.expand(batch, heads, steps, steps).clone()
    if pad is not None:
        allowed &= ~torch.from_numpy(pad)[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = scores.softmax(-1)
    if not soft:
        ranks = scores.detach().argsort(-1, descending=True).argsort(-1)  # 0 = best key of the query
        hard = scores.masked_fill(ranks >= top_k, float("-inf")).softmax(-1)
        probs = probs + (hard - probs).detach() if straight_through else hard
    y = (probs @ v).permute(0, 2, 1, 3).reshape(batch, steps, width)
    return proj("out", y)


@pytest.mark.parametrize("top_k, causal, padding", [(1, False, False), (2, True, False), (3, False, True)])
def test_hard_attention_forward(top_k: int, causal: bool, padding: bool) -> None:
    call = f"hard_attention(2, top_k = {top_k}{', causal' if causal else ''}" + (", key_padding_mask = pad)" if padding else ")")
    spec = hard_spec(call, padding)
    weights = spec.init_weights(seed=top_k)
    w = {k: torch.from_numpy(v) for k, v in weights.items()}
    rng = np.random.default_rng(top_k)
    for batch, steps in SHAPES:
        feeds = {"x": randn(rng, batch, steps, 8)}
        pad = None
        if padding:
            pad = rng.random((batch, steps)) < 0.4
            pad[:, 0] = False
            feeds["pad"] = pad
        with torch.no_grad():
            want = hard_reference(feeds["x"], w, "hard_attention", 2, top_k, causal, pad).numpy()
        got_torch, got_onnx = run_both(spec, weights, feeds)
        assert_close(got_torch, got_onnx, [want], f"top_k {top_k} batch {batch} steps {steps}")


def test_hard_attention_top1_is_a_one_hot_choice() -> None:
    """With top_k = 1 and identity projections, each output row is exactly one value row."""
    spec = hard_spec("hard_attention(1, bias = false)")
    eye = np.eye(8, dtype=np.float32)
    weights = {f"hard_attention.{p}.weight": eye for p in ("q", "k", "v", "out")}
    x = randn(np.random.default_rng(0), 2, 6, 8)
    got_torch, got_onnx = run_both(spec, weights, {"x": x})
    for got in (got_torch[0], got_onnx[0]):
        rows = np.abs(got[:, :, None, :] - x[:, None, :, :]).max(-1)  # [B, T, S]: distance to each input row
        assert (rows.min(-1) < 1e-5).all()


def test_hard_attention_gradient_is_straight_through() -> None:
    """Training: the gradient through the attention weights is the soft softmax's.

    With a loss linear in the output, the gradient reaching the attention
    weights does not depend on them, so the q and k projections get exactly
    the gradient of ordinary (soft) attention with the same weights, while v
    and out see the hard forward. In eval mode, top_k = 1 has a one-hot
    softmax with zero gradient: q and k would never learn without the rule.
    """
    hard = hard_spec("hard_attention(2, top_k = 1)")
    soft = hard_spec("attention(2)")
    weights = hard.init_weights(seed=5)
    x = randn(np.random.default_rng(5), 3, 7, 8)
    direction = torch.from_numpy(randn(np.random.default_rng(6), 3, 7, 8))

    def grads(spec, prefix: str, train: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        renamed = {k.replace("hard_attention.", f"{prefix}."): v for k, v in weights.items()}
        module = spec.to_torch(weights=renamed).train(train)
        y = module(torch.from_numpy(x))
        (y * direction).sum().backward()
        return y.detach(), {k.split(".", 1)[1]: p.grad for k, p in module.named_parameters()}

    y_hard, g_hard = grads(hard, "hard_attention", train=True)
    _, g_soft = grads(soft, "attention", train=True)
    y_eval, g_eval = grads(hard, "hard_attention", train=False)

    # the forward is discrete in training too
    np.testing.assert_allclose(y_hard.numpy(), y_eval.numpy(), rtol=0, atol=1e-6)
    for name in ("q.weight", "q.bias", "k.weight", "k.bias"):
        torch.testing.assert_close(g_hard[name], g_soft[name], rtol=0, atol=1e-6, msg=name)
        assert g_eval[name].abs().max() < 1e-6, f"{name}: a one-hot softmax has no gradient"
    for name in ("q.weight", "q.bias", "k.weight"):  # (k.bias shifts all of a query's scores alike: no gradient)
        assert g_hard[name].abs().max() > 1e-3, name

    # v and out: the gradient of the hard forward, from the hand-written reference
    w = {k: torch.from_numpy(v).requires_grad_() for k, v in weights.items()}
    y_ref = hard_reference(x, w, "hard_attention", 2, 1, straight_through=True)
    (y_ref * direction).sum().backward()
    for name, p in w.items():
        torch.testing.assert_close(g_hard[name.split(".", 1)[1]], p.grad, rtol=0, atol=1e-5, msg=name)


# --- VAE sampling ---------------------------------------------------------------------------------

VAE = "model Vae() {\n  input mu: float32[B, 4]\n  input logvar: float32[B, 4]\n  output z = reparameterize(mu, logvar)\n}\n"


def test_reparameterize_eval_and_onnx_give_the_mean() -> None:
    spec = flashc.loads(VAE)
    rng = np.random.default_rng(0)
    for batch, _ in SHAPES:
        mu, logvar = randn(rng, batch, 4), randn(rng, batch, 4)
        got_torch, got_onnx = run_both(spec, None, {"mu": mu, "logvar": logvar})
        assert_close(got_torch, got_onnx, [mu], f"batch {batch}")


def test_reparameterize_samples_in_training() -> None:
    spec = flashc.loads(VAE)
    module = spec.to_torch().train()
    n = 20000
    mu = torch.full((n, 4), 1.5, requires_grad=True)
    logvar = torch.full((n, 4), math.log(0.25), requires_grad=True)  # std 0.5
    torch.manual_seed(0)
    z = module(mu, logvar)
    torch.manual_seed(0)
    assert torch.equal(module(mu, logvar), z), "seeded sampling is reproducible"
    assert abs(z.mean().item() - 1.5) < 0.01 and abs(z.std().item() - 0.5) < 0.01
    eps = (z - mu) / 0.5
    assert abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02
    z.sum().backward()  # differentiable in mu and logvar: dz/dmu = 1, dz/dlogvar = eps * std / 2
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, (eps * 0.25).detach(), rtol=0, atol=1e-5)
