"""Names a user can predict: snake-cased blocks, block-prefixed values, and `as` for inline layer names."""

from __future__ import annotations

import numpy as np
import pytest

import flashc
from flashc.ops.base import snake


def load(body: str, **overrides: object) -> flashc.Spec:
    return flashc.loads("model M(d = 8) {\n  input x: float32[B, 4]\n" + body + "\n}\n", **overrides)


def weights(spec: flashc.Spec) -> list[str]:
    return list(spec.graph.weights)


def values(spec: flashc.Spec) -> list[str]:
    return [o.name for n in spec.graph.nodes for o in n.outputs]


@pytest.mark.parametrize("camel, snaked", [
    ("ConvBNReLU", "conv_bn_relu"), ("SEBlock", "se_block"), ("MLP", "mlp"), ("Decoder", "decoder"),
    ("MultiHeadAttention", "multi_head_attention"), ("LeakyReLU", "leaky_relu"), ("ReLU6", "relu6"),
    ("Conv2D", "conv2d"), ("GPT2Block", "gpt2_block"), ("LSTMCell", "lstm_cell"), ("My_Block", "my_block"),
    ("InvertedResidual", "inverted_residual"), ("mlp", "mlp"),
])
def test_snake_case_keeps_acronyms_whole(camel, snaked):
    assert snake(camel) == snaked


def test_a_camel_case_block_is_its_snake_case_name():
    spec = load("""
  block ConvBNReLU(h) { return h |> linear(d) |> relu }
  block SEBlock(h) { return h |> linear(d) }
  output y = x |> ConvBNReLU |> SEBlock""")
    assert weights(spec) == ["conv_bn_relu.linear.weight", "conv_bn_relu.linear.bias",
                             "se_block.linear.weight", "se_block.linear.bias"]


GPT_LIKE = """
  block Decoder(x) {
    x = x + (x |> layernorm |> linear(d))
    x = x + (x |> layernorm |> linear(4 * d) |> gelu |> linear(d))
    return x
  }
  h = x |> linear(d) |> gelu
  output y = h |> repeat(2, Decoder) as blocks
"""


def test_anonymous_values_inside_a_block_carry_its_prefix():
    spec = load(GPT_LIKE)
    names = values(spec)
    assert "blocks.0.gelu" in names and "blocks.1.gelu" in names
    assert [n for n in names if n.startswith("blocks.0.x")] == ["blocks.0.x", "blocks.0.x_1"]
    assert names[:2] == ["linear", "h"]  # the model's own values stay unprefixed
    assert not any(n.startswith("gelu_") for n in names)


def test_dotted_value_names_are_underscored_in_pytorch_and_kept_in_onnx():
    pytest.importorskip("torch")
    import onnxruntime as ort
    import torch

    spec = load(GPT_LIKE)
    source = spec.torch_source()
    assert "blocks_0_gelu = " in source and "blocks.0.gelu" not in source.split("def forward")[1]
    model = spec.to_torch(seed=0).eval()
    proto = spec.to_onnx(weights=model.state_dict())
    onnx_values = {o for n in proto.graph.node for o in n.output}
    assert any(v.startswith("blocks.0.gelu/") for v in onnx_values)  # ONNX names values scope/op
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_value_named_like_a_flattened_block_value_stays_distinct():
    spec = load("""
  block B(h) {
    x = h |> relu
    return x |> tanh
  }
  blocks_0_x = x |> tanh
  output y = blocks_0_x |> B as blocks_0""")
    idents = [o.ident for n in spec.graph.nodes for o in n.outputs]
    assert len(idents) == len(set(idents))
    assert values(spec) == ["blocks_0_x", "blocks_0.x_1", "y"]  # `blocks_0.x` would be `blocks_0_x` in Python
    spec.to_torch()  # the generated source compiles


def test_as_names_a_layer_inline_and_binds_the_name():
    spec = load("""
  block Attention(h) {
    q = h |> linear(d) as q_proj
    k = h |> linear(d, bias = false) as k_proj
    return q + k
  }
  h = x |> linear(d) as embed |> Attention as attn
  output y = h |> linear(d, weight = embed.weight)""", d=4)
    assert weights(spec) == ["embed.weight", "embed.bias", "attn.q_proj.weight", "attn.q_proj.bias",
                             "attn.k_proj.weight", "linear.bias"]


def test_as_inside_a_repeat_names_each_copy():
    spec = load("""
  block Layer(h) { return h |> linear(d) as dense |> layernorm as norm }
  output y = x |> linear(d) |> repeat(2, Layer) as layers""")
    assert [w for w in weights(spec) if w.startswith("layers")] == [
        "layers.0.dense.weight", "layers.0.dense.bias", "layers.0.norm.weight", "layers.0.norm.bias",
        "layers.1.dense.weight", "layers.1.dense.bias", "layers.1.norm.weight", "layers.1.norm.bias"]


def test_as_on_a_tensor_is_an_error_with_a_hint():
    with pytest.raises(flashc.FlashError) as exc:
        load("  output y = (x |> linear(d)) as proj")
    d = exc.value.diagnostics[0]
    assert "`as` names a layer or a block, got a tensor" in d.message
    assert d.hint == "to name a tensor, assign it: `proj = ...`"
    assert (d.span.line, d.span.col) == (3, 14)


def test_as_on_a_named_layer_is_an_error():
    with pytest.raises(flashc.FlashError) as exc:
        load("  fc = linear(d)\n  output y = x |> fc as other")
    d = exc.value.diagnostics[0]
    assert "the layer `fc` already has a name" in d.message
    assert (d.span.line, d.span.col) == (4, 25)


def test_as_cannot_take_a_name_torch_modules_use():
    with pytest.raises(flashc.FlashError, match="`training` cannot name a layer"):
        load("  output y = x |> linear(d) as training")


def test_gpt2_block_values_are_named_under_the_block():
    from pathlib import Path

    spec = flashc.load(Path(__file__).resolve().parent.parent / "specs" / "gpt2.flash", depth=2, d=64, heads=2, vocab=50)
    names = values(spec)
    assert {"blocks.0.gelu", "blocks.1.gelu", "blocks.0.x", "blocks.0.x_1", "blocks.1.x_1"} <= set(names)
    assert not any(n.startswith(("gelu_", "blocks_")) for n in names)
