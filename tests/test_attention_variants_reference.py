"""`attention`'s variants against their references, in PyTorch and in onnxruntime at opsets 23, 18 and 17.

- grouped- and multi-query attention against F.scaled_dot_product_attention(enable_gqa=True);
- a LLaMA decoder layer (GQA + RoPE, rmsnorm, silu-gated MLP) written as a .flash spec against
  transformers' LlamaDecoderLayer, and the same spec with Qwen2's bias switches against
  Qwen2DecoderLayer;
- the sliding window against a one-layer MistralModel (transformers builds the window mask);
- T5's relative position bias against T5Attention (encoder: bidirectional; decoder: causal);
- GPT-J's interleaved, partial rotary embedding against GPTJAttention;
- half-split partial rotary and ALiBi against direct formulas (ALiBi's slopes: BLOOM's
  build_alibi_tensor in transformers).

The Hugging Face modules are built from small seeded random configs (nothing is downloaded);
their state dicts map onto the spec's weight names by renaming only (q_proj -> q, o_proj -> out).
Opset 23 runs onnx `Attention` and `RotaryEmbedding`; 17 and 18 run their decomposition.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import flashc
from flashc.diagnostics import FlashError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
F = torch.nn.functional

ATOL = 1e-5
OPSETS = (23, 18, 17)


def outputs(spec, weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray], output: str = "y") -> dict[str, np.ndarray]:
    """The spec's output from the generated torch module and from onnxruntime at every opset."""
    assert set(weights) == set(spec.graph.weights), sorted(set(weights) ^ set(spec.graph.weights))
    module = spec.to_torch(weights=weights).eval()
    with torch.no_grad():
        got = {"torch": module(*(torch.from_numpy(feeds[name]) for name in spec.inputs)).numpy()}
    for opset in OPSETS:
        model = spec.to_onnx(weights=weights, opset=opset)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (got[f"onnx opset {opset}"],) = session.run([output], feeds)
    return got


def assert_matches(got: dict[str, np.ndarray], want: np.ndarray, atol: float = ATOL, where: str = "") -> None:
    assert np.isfinite(want).all()
    for backend, value in got.items():
        np.testing.assert_allclose(value, want, rtol=0, atol=atol, err_msg=f"{backend} {where}")


def attention_spec(call: str, width: int, padding: bool = False):
    pad = "\n  input pad: bool[B, T]" if padding else ""
    return flashc.loads(f"model Attn() {{\n  input x: float32[B, T, {width}]{pad}\n  output y = {call}\n}}\n")


def random_weights(spec, seed: int) -> dict[str, np.ndarray]:
    """Normal weights of std 0.3 (biases too, so a dropped bias shows) for every weight of the spec."""
    rng = np.random.default_rng(seed)
    return {p: (0.3 * rng.standard_normal(w.spec.shape)).astype(np.float32) for p, w in sorted(spec.graph.weights.items())}


def hf_to_flashc(state: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """A Hugging Face attention's state dict under flashc's names: q_proj -> q, o_proj / out_proj / o -> out."""
    renames = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "out", "out_proj": "out", "o": "out",
               "relative_attention_bias": None}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[-2] in renames:
            new = renames[parts[-2]]
            parts = parts[:-2] + (["relative_bias"] if new is None else [new, parts[-1]])
        out[prefix + ".".join(parts)] = value.detach().numpy().copy()
    return out


def randomize_norms(module) -> None:
    """RMSNorm scales start at one: make them random so a dropped scale shows."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=gen))


def causal_float_mask(t: int, s: int | None = None) -> torch.Tensor:
    return torch.full((t, s or t), float("-inf")).triu(1)[None, None]


# --- grouped- and multi-query attention against F.scaled_dot_product_attention ------------------


def sdpa_reference(w: dict[str, np.ndarray], x: np.ndarray, heads: int, kv_heads: int, head_dim: int,
                   causal: bool = False, pad: np.ndarray | None = None, scale: float | None = None,
                   rope: tuple[float, int] | None = None, bias: np.ndarray | None = None) -> np.ndarray:
    """Project, split heads, (rotate half-split), F.scaled_dot_product_attention(enable_gqa=True), merge, project."""
    t = {k.removeprefix("attention."): torch.from_numpy(v) for k, v in w.items()}
    xs = torch.from_numpy(x)
    B, T, _ = xs.shape

    def project(name: str, n: int) -> torch.Tensor:
        y = F.linear(xs, t[f"{name}.weight"], t.get(f"{name}.bias"))
        return y.view(B, T, n, head_dim).transpose(1, 2)

    q, k, v = project("q", heads), project("k", kv_heads), project("v", kv_heads)
    if rope is not None:  # LLaMA's rotate_half form on the first `dim` features of every head
        theta, dim = rope
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2).float() / dim)
        angles = torch.arange(T).float()[:, None] * inv_freq
        cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()

        def rotate(u: torch.Tensor) -> torch.Tensor:
            r, rest = u[..., :dim], u[..., dim:]
            half = torch.cat((-r[..., dim // 2:], r[..., : dim // 2]), -1)
            return torch.cat((r * cos + half * sin, rest), -1)

        q, k = rotate(q), rotate(k)
    mask = None
    if pad is not None:
        mask = ~torch.from_numpy(pad)[:, None, None, :]
    if causal and (mask is not None or bias is not None):
        tril = torch.ones(T, T, dtype=torch.bool).tril()
        mask = tril if mask is None else mask & tril
    if bias is not None:
        b = torch.from_numpy(bias)
        mask = b if mask is None else b.masked_fill(~mask, float("-inf"))
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale,
                                       enable_gqa=True)
    y = y.transpose(1, 2).reshape(B, T, heads * head_dim)
    return F.linear(y, t["out.weight"], t.get("out.bias")).numpy()


GQA_CASES = [
    # (width, heads, kv_heads, head_dim or None, causal, padding, extra settings)
    (16, 4, 2, None, True, False, ""),
    (16, 4, 1, None, False, False, ""),  # multi-query
    (12, 6, 3, 4, True, True, ", head_dim = 4"),  # heads * head_dim (24) differs from the width
    (16, 8, 2, None, False, True, ", qkv_bias, out_bias = false"),  # Qwen2's switches
    (16, 4, 4, None, True, False, ", scale = 0.2"),
]


@pytest.mark.parametrize(("width", "heads", "kv_heads", "head_dim", "causal", "padding", "extra"), GQA_CASES)
def test_grouped_query_attention_matches_sdpa(width, heads, kv_heads, head_dim, causal, padding, extra) -> None:
    call = f"attention(x, heads = {heads}, kv_heads = {kv_heads}{', causal' if causal else ''}{extra}"
    call += ", key_padding_mask = pad)" if padding else ")"
    spec = attention_spec(call, width, padding)
    hd = head_dim or width // heads
    assert spec.graph.weights["attention.k.weight"].spec.shape == (kv_heads * hd, width)
    w = random_weights(spec, seed=heads * 10 + kv_heads)
    if "out_bias = false" in extra:
        assert "attention.out.bias" not in w and "attention.q.bias" in w
    rng = np.random.default_rng(kv_heads)
    for batch, length in ((2, 5), (3, 8)):
        feeds = {"x": rng.standard_normal((batch, length, width)).astype(np.float32)}
        pad = None
        if padding:
            pad = rng.random((batch, length)) < 0.4
            pad[:, 0], pad[:, -1] = False, True
            feeds["pad"] = pad
        scale = 0.2 if "scale" in extra else None
        want = sdpa_reference(w, feeds["x"], heads, kv_heads, hd, causal, pad, scale)
        assert_matches(outputs(spec, w, feeds), want, where=f"batch {batch}, length {length}")


@pytest.mark.parametrize(("heads", "kv_heads", "rope_dim"), [(4, 2, None), (2, 1, 4), (2, 2, 6)])
def test_half_split_rotary_matches_the_formula(heads: int, kv_heads: int, rope_dim: int | None) -> None:
    """LLaMA/GPT-NeoX rotation (feature i with i + dim/2), over the whole head or its first rope_dim features."""
    extra = "" if rope_dim is None else f", rope_dim = {rope_dim}"
    spec = attention_spec(f"attention(x, heads = {heads}, kv_heads = {kv_heads}, rope = 500.0, causal{extra})", 16)
    w = random_weights(spec, seed=3)
    x = np.random.default_rng(3).standard_normal((2, 9, 16)).astype(np.float32)
    hd = 16 // heads
    want = sdpa_reference(w, x, heads, kv_heads, hd, causal=True, rope=(500.0, rope_dim or hd))
    assert_matches(outputs(spec, w, {"x": x}), want)


# --- Hugging Face modules ---------------------------------------------------------------------

DECODER_LAYER = """
model {name}(d = 64, heads = 4, kv_heads = 2, ff = 96, theta = 10000.0, eps = 1e-6) {{
  input x: float32[B, T, d]

  block Mlp(x) {{
    gate_proj = linear(ff, bias = false)
    up_proj = linear(ff, bias = false)
    down_proj = linear(d, bias = false)
    return down_proj(silu(gate_proj(x)) * up_proj(x))
  }}

  input_layernorm = rmsnorm(eps = eps)
  self_attn = attention(heads, kv_heads = kv_heads, rope = theta, causal{bias})
  post_attention_layernorm = rmsnorm(eps = eps)
  mlp = Mlp
  h = x + self_attn(input_layernorm(x))
  output y = h + mlp(post_attention_layernorm(h))
}}
"""


def decoder_layer_case(family: str):
    """(HF decoder layer, its rotary embedding, the .flash spec) for LLaMA or Qwen2, seeded."""
    if family == "llama":
        mod = pytest.importorskip("transformers.models.llama.modeling_llama")
        config_cls, layer_cls, rotary_cls, bias = mod.LlamaConfig, mod.LlamaDecoderLayer, mod.LlamaRotaryEmbedding, ", bias = false"
    else:
        mod = pytest.importorskip("transformers.models.qwen2.modeling_qwen2")
        config_cls, layer_cls, rotary_cls, bias = mod.Qwen2Config, mod.Qwen2DecoderLayer, mod.Qwen2RotaryEmbedding, ", qkv_bias, out_bias = false"
    config = config_cls(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                        rms_norm_eps=1e-6, max_position_embeddings=64, attention_dropout=0.0,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    layer = layer_cls(config, layer_idx=0).eval()
    randomize_norms(layer)
    with torch.no_grad():  # nonzero biases, so a dropped or misplaced bias shows
        for name, p in layer.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    spec = flashc.loads(DECODER_LAYER.format(name=family.capitalize() + "Layer", bias=bias))
    return layer, rotary_cls(config), spec


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_decoder_layer_matches_transformers(family: str) -> None:
    layer, rotary, spec = decoder_layer_case(family)
    weights = hf_to_flashc(layer.state_dict())
    assert spec.graph.parameter_count == sum(p.numel() for p in layer.parameters())
    rng = np.random.default_rng(4)
    for batch, length in ((2, 7), (1, 12)):
        x = rng.standard_normal((batch, length, 64)).astype(np.float32)
        xt = torch.from_numpy(x)
        positions = torch.arange(length)[None].expand(batch, length)
        with torch.no_grad():
            want = layer(xt, attention_mask=causal_float_mask(length), position_embeddings=rotary(xt, positions))
        assert_matches(outputs(spec, weights, {"x": x}), want.numpy(), where=f"{family}, batch {batch}, length {length}")


MISTRAL = """
model Mistral(vocab = 50, d = 32, heads = 4, kv_heads = 2, ff = 48, window = 3, eps = 1e-6) {
  input tokens: int64[B, T]

  block Mlp(x) {
    gate_proj = linear(ff, bias = false)
    up_proj = linear(ff, bias = false)
    down_proj = linear(d, bias = false)
    return down_proj(silu(gate_proj(x)) * up_proj(x))
  }

  block Layer(x) {
    input_layernorm = rmsnorm(eps = eps)
    self_attn = attention(heads, kv_heads = kv_heads, rope = 10000.0, causal, window = window, bias = false)
    post_attention_layernorm = rmsnorm(eps = eps)
    mlp = Mlp
    h = x + self_attn(input_layernorm(x))
    return h + mlp(post_attention_layernorm(h))
  }

  embed_tokens = embedding(vocab, d)
  layers = repeat(1, Layer)
  norm = rmsnorm(eps = eps)
  output y = tokens |> embed_tokens |> layers |> norm
}
"""


def test_sliding_window_matches_mistral() -> None:
    """MistralModel builds its own sliding-window mask: query i sees keys i - window < j <= i."""
    mod = pytest.importorskip("transformers.models.mistral.modeling_mistral")
    config = mod.MistralConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                               num_attention_heads=4, num_key_value_heads=2, sliding_window=3, rms_norm_eps=1e-6,
                               max_position_embeddings=64, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = mod.MistralModel(config).eval()
    randomize_norms(model)
    weights = hf_to_flashc(model.state_dict())
    spec = flashc.loads(MISTRAL)
    rng = np.random.default_rng(5)
    for batch, length in ((2, 9), (1, 4)):
        tokens = rng.integers(0, 50, (batch, length)).astype(np.int64)
        with torch.no_grad():
            want = model(input_ids=torch.from_numpy(tokens)).last_hidden_state.numpy()
        assert_matches(outputs(spec, weights, {"tokens": tokens}), want, where=f"batch {batch}, length {length}")
    with torch.no_grad():  # the window matters: without it the result differs
        unwindowed = flashc.loads(MISTRAL.replace(", window = window", "")).to_torch(weights=weights).eval()
        far = unwindowed(torch.from_numpy(tokens)).numpy()
    assert np.abs(far - want).max() > 1e-3


@pytest.mark.parametrize(("decoder", "d_kv"), [(False, 8), (True, 8), (False, 12), (True, 12)])
def test_t5_relative_bias_matches_t5_attention(decoder: bool, d_kv: int) -> None:
    """Encoder: bidirectional buckets, no mask. Decoder: causal buckets and a causal mask. No 1/sqrt(d) scaling."""
    mod = pytest.importorskip("transformers.models.t5.modeling_t5")
    config = mod.T5Config(d_model=32, d_kv=d_kv, num_heads=4, relative_attention_num_buckets=8,
                          relative_attention_max_distance=20, dropout_rate=0.0, is_decoder=decoder)
    config._attn_implementation = "eager"
    torch.manual_seed(6)
    attn = mod.T5Attention(config, has_relative_attention_bias=True, layer_idx=0, is_causal=decoder).eval()
    weights = hf_to_flashc(attn.state_dict(), prefix="attention.")
    causal = ", causal" if decoder else ""
    spec = attention_spec(f"attention(x, heads = 4, head_dim = {d_kv}, relative_buckets = 8, max_distance = 20, "
                          f"scale = 1.0, bias = false{causal})", 32)
    assert spec.graph.weights["attention.relative_bias"].spec.shape == (8, 4)
    rng = np.random.default_rng(6)
    for batch, length in ((2, 5), (1, 30)):  # 30 > max_distance: the last bucket is shared
        x = rng.standard_normal((batch, length, 32)).astype(np.float32)
        with torch.no_grad():
            mask = causal_float_mask(length) if decoder else None
            want, _, _ = attn(torch.from_numpy(x), mask=mask)
        assert_matches(outputs(spec, weights, {"x": x}), want.numpy(), where=f"batch {batch}, length {length}")


@pytest.mark.parametrize("rotary_dim", [4, 8])
def test_interleaved_rotary_matches_gptj(rotary_dim: int) -> None:
    """GPT-J rotates pairs (2i, 2i + 1) of the first rotary_dim features of each head."""
    mod = pytest.importorskip("transformers.models.gptj.modeling_gptj")
    config = mod.GPTJConfig(n_embd=32, n_head=4, rotary_dim=rotary_dim, n_positions=64, attn_pdrop=0.0,
                            resid_pdrop=0.0)
    config._attn_implementation = "eager"
    torch.manual_seed(7)
    attn = mod.GPTJAttention(config, layer_idx=0).eval()
    rotary = mod.GPTJRotaryEmbedding(config)
    weights = hf_to_flashc(attn.state_dict(), prefix="attention.")
    spec = attention_spec(f'attention(x, heads = 4, rope = 10000.0, rope_dim = {rotary_dim}, '
                          f'rope_style = "interleaved", causal, bias = false)', 32)
    rng = np.random.default_rng(7)
    for batch, length in ((2, 6), (1, 11)):
        x = rng.standard_normal((batch, length, 32)).astype(np.float32)
        xt = torch.from_numpy(x)
        positions = torch.arange(length)[None].expand(batch, length)
        with torch.no_grad():
            want, _ = attn(xt, position_embeddings=rotary(xt, positions), attention_mask=causal_float_mask(length))
        assert_matches(outputs(spec, weights, {"x": x}), want.numpy(), where=f"batch {batch}, length {length}")


@pytest.mark.parametrize("heads", [4, 6, 12])
def test_alibi_matches_bloom_slopes(heads: int) -> None:
    """Causal ALiBi: BLOOM adds slope_h * j, the paper -slope_h * (i - j); per query row they differ by a constant."""
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    width, length = 2 * heads, 7
    spec = attention_spec(f"attention(x, heads = {heads}, alibi, causal)", width)
    w = random_weights(spec, seed=heads)
    x = np.random.default_rng(heads).standard_normal((2, length, width)).astype(np.float32)
    alibi = bloom.build_alibi_tensor(torch.ones(1, length), heads, torch.float32)  # [heads, 1, S]: slope * j
    want = sdpa_reference(w, x, heads, heads, 2, causal=True, bias=alibi.numpy())
    assert_matches(outputs(spec, w, {"x": x}), want)


def test_alibi_slopes_follow_the_paper() -> None:
    from flashc.ops.attention_positions import alibi_slopes

    assert alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(2) == [2.0**-4, 2.0**-8]
    # 6 heads: the 4-head slopes, then every other slope of 8 heads
    assert alibi_slopes(6) == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    assert all(math.isclose(a, b) for a, b in zip(alibi_slopes(16)[:2], [2 ** -0.5, 2.0**-1]))


# --- checking ---------------------------------------------------------------------------------

BAD = [
    ("attention(x, heads = 4, kv_heads = 3)", "kv_heads=3 must divide heads=4"),
    ("attention(x, heads = 4, rope = 10000.0, rope_dim = 3)", "rotary dimension must be even"),
    ("attention(x, heads = 4, rope = 10000.0, rope_dim = 8)", "at most head_dim=4"),
    ("attention(x, heads = 4, rope_dim = 2)", "`rope_dim` needs rotary embeddings"),
    ('attention(x, heads = 4, rope_style = "interleaved")', "`rope_style` needs rotary embeddings"),
    ('attention(x, heads = 4, rope = 1.0, rope_style = "gptj")', "rope_style must be one of"),
    ("attention(x, heads = 4, window = 4)", "`window` needs `causal`"),
    ("attention(x, heads = 4, max_distance = 64)", "`max_distance` needs `relative_buckets`"),
    ("attention(x, heads = 4, relative_buckets = 3)", "too few; use at least 4"),
    ("attention(x, heads = 4, relative_buckets = 32, max_distance = 8)", "must exceed the 8"),
    ("attention(x, heads = 3)", "must divide the width 16"),
]


@pytest.mark.parametrize(("call", "message"), BAD)
def test_bad_settings_are_errors_at_the_call(call: str, message: str) -> None:
    with pytest.raises(FlashError) as info:
        attention_spec(call, 16)
    text = str(info.value)
    assert message in text, text
    assert "<string>:3:" in text or ":3:" in text, text


def test_documented_examples_build() -> None:
    """Every call docs/language.md shows for `attention` is a valid spec line."""
    from flashc.ops.attention import Attention

    for call, _ in Attention.examples:
        spec = flashc.loads("model Example() {\n  input x: float32[B, T, 512]\n  input memory: float32[B, S, 512]\n"
                            f"  input pad: bool[B, T]\n  output y = {call}\n}}\n")
        assert spec.graph.outputs[0][1].type.shape[-1] == 512, call


def test_t5_layers_share_one_bias_table() -> None:
    """T5 computes the bias in its first layer and hands it on; a tie (`relative_bias = a0.relative_bias`) does so."""
    mod = pytest.importorskip("transformers.models.t5.modeling_t5")
    config = mod.T5Config(d_model=16, d_kv=4, num_heads=4, relative_attention_num_buckets=8,
                          relative_attention_max_distance=20, dropout_rate=0.0)
    config._attn_implementation = "eager"
    torch.manual_seed(8)
    first = mod.T5Attention(config, has_relative_attention_bias=True, layer_idx=0).eval()
    second = mod.T5Attention(config, has_relative_attention_bias=False, layer_idx=1).eval()
    spec = flashc.loads(
        "model T5Two() {\n  input x: float32[B, T, 16]\n"
        "  a0 = attention(4, relative_buckets = 8, max_distance = 20, scale = 1.0, bias = false)\n"
        "  h = x |> a0\n"  # a weight can be tied once its layer has been applied
        "  output y = h |> attention(4, relative_buckets = 8, max_distance = 20, scale = 1.0, bias = false, "
        "relative_bias = a0.relative_bias) as a1\n}\n"
    )
    weights = {**hf_to_flashc(first.state_dict(), "a0."), **hf_to_flashc(second.state_dict(), "a1.")}
    assert "a1.relative_bias" not in spec.graph.weights
    x = np.random.default_rng(8).standard_normal((2, 9, 16)).astype(np.float32)
    with torch.no_grad():
        h, bias, _ = first(torch.from_numpy(x))
        want, _, _ = second(h, position_bias=bias)
    assert_matches(outputs(spec, weights, {"x": x}), want.numpy())


def test_tinyllama_spec_matches_llama_for_causal_lm() -> None:
    """specs/tinyllama.flash, cut to two small layers, equals LlamaForCausalLM (HF builds the causal mask and rotary tables)."""
    mod = pytest.importorskip("transformers.models.llama.modeling_llama")
    sizes = dict(vocab=50, d=64, heads=4, kv_heads=2, ff=96, depth=2)
    config = mod.LlamaConfig(vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                             max_position_embeddings=64, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config._attn_implementation = "eager"
    torch.manual_seed(9)
    model = mod.LlamaForCausalLM(config).eval()
    randomize_norms(model)
    weights = {k.removeprefix("model."): v for k, v in hf_to_flashc(model.state_dict()).items()}
    spec = flashc.load(Path(__file__).resolve().parent.parent / "specs" / "tinyllama.flash", **sizes)
    assert spec.parameter_count == sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(9)
    for batch, length in ((2, 6), (1, 13)):
        tokens = rng.integers(0, 50, (batch, length)).astype(np.int64)
        with torch.no_grad():
            want = model(input_ids=torch.from_numpy(tokens)).logits.numpy()
        got = outputs(spec, weights, {"tokens": tokens}, output="logits")
        assert_matches(got, want, where=f"batch {batch}, length {length}")


@pytest.mark.parametrize("extra", ["", ", alibi", ", relative_buckets = 4, max_distance = 3"])
def test_a_query_with_no_visible_key_gets_zero_weights(extra: str) -> None:
    """Window 2 with keys 1 and 2 padded leaves query 2 nothing to see: every backend gives it zero weights,
    so its output is the output projection's bias (torch's rule for a fully masked row)."""
    spec = attention_spec(f"attention(x, heads = 2, causal, window = 2, key_padding_mask = pad{extra})", 8, padding=True)
    w = random_weights(spec, seed=10)
    x = np.random.default_rng(10).standard_normal((2, 5, 8)).astype(np.float32)
    pad = np.zeros((2, 5), dtype=bool)
    pad[:, 1:3] = True
    got = outputs(spec, w, {"x": x, "pad": pad})
    for backend, y in got.items():
        np.testing.assert_allclose(y[:, 2], np.broadcast_to(w["attention.out.bias"], (2, 8)), rtol=0, atol=ATOL,
                                   err_msg=backend)
        np.testing.assert_allclose(y, got["torch"], rtol=0, atol=ATOL, err_msg=backend)


def test_generated_source_imports_only_torch() -> None:
    """Every variant at once: the standalone PyTorch file still imports nothing but torch."""
    spec = attention_spec('attention(x, heads = 4, kv_heads = 2, rope = 100.0, rope_style = "interleaved", causal, '
                          "window = 3, alibi, relative_buckets = 8, max_distance = 10, key_padding_mask = pad)", 16,
                          padding=True)
    source = spec.torch_source()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"torch"}
    assert "class PositionalAttention(MultiHeadAttention)" in source and "def alibi_slopes" in source
    plain = attention_spec("attention(x, heads = 4, kv_heads = 2, causal)", 16).torch_source()
    assert "PositionalAttention" not in plain and "rotary" not in plain  # a plain layer's file stays short
