"""Encoder-decoder models of the zoo against Hugging Face `transformers` built from small random
configs (nothing is downloaded), in PyTorch and onnxruntime (<= 1e-4): specs/t5_small.flash
against T5ForConditionalGeneration (relative position bias shared per stack, tied and rescaled
output projection)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_reference import assert_matches_reference, numpy_state, perturb

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"


def t5_to_flashc(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """T5's names under the spec's: attention's `o` is `out`; block 0's bias table belongs to its stack;
    the tied copies (embed_tokens, lm_head) are the one `shared` table."""
    out = {}
    for key, value in state.items():
        if key.endswith("embed_tokens.weight") or key == "lm_head.weight":
            continue
        parts = key.split(".")
        if "relative_attention_bias" in parts:
            out[f"{parts[0]}.relative_attention_bias.weight"] = value
            continue
        out[".".join("out" if p == "o" else p for p in parts)] = value
    return out


def test_t5_matches_t5_for_conditional_generation():
    mod = pytest.importorskip("transformers.models.t5.modeling_t5")
    config = mod.T5Config(vocab_size=60, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2,
                          num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=12,
                          dropout_rate=0.0, layer_norm_epsilon=1e-6, feed_forward_proj="relu",
                          tie_word_embeddings=True, decoder_start_token_id=0, pad_token_id=0)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = perturb(mod.T5ForConditionalGeneration(config), seed=0, std=0.3)
    assert model.lm_head.weight is model.shared.weight
    spec = flashc.load(SPECS / "t5_small.flash", vocab=60, d=32, d_kv=8, heads=4, ff=48, depth=2, buckets=8,
                       max_distance=12)
    assert spec.parameter_count == sum(p.numel() for p in model.parameters())
    weights = t5_to_flashc(numpy_state(model))
    rng = np.random.default_rng(0)
    for batch, source, target in ((2, 9, 5), (1, 4, 15)):  # distances past max_distance: the last bucket
        ids = rng.integers(1, 60, (batch, source)).astype(np.int64)
        decoder_ids = rng.integers(1, 60, (batch, target)).astype(np.int64)
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids), decoder_input_ids=torch.from_numpy(decoder_ids))
        assert_matches_reference(spec, weights, {"input_ids": ids, "decoder_input_ids": decoder_ids},
                                 [out.encoder_last_hidden_state.numpy(), out.logits.numpy()])


def test_a_parameter_weight_is_tied_by_name():
    """`table = parameter(...)` then `relative_bias = table.weight`: one table, read by every layer."""
    spec = flashc.loads(
        "model M() {\n  input x: float32[B, T, 16]\n  table = parameter(8, 4)\n"
        "  block L(x) {\n    return x |> attention(4, relative_buckets = 8, max_distance = 20, bias = false, "
        "relative_bias = table.weight)\n  }\n  output y = x |> repeat(2, L)\n}\n")
    assert [k for k in spec.graph.weights if "table" in k or "relative" in k] == ["table.weight"]
    readers = [n for n in spec.graph.nodes if "table.weight" in dict(n.weights).values()]
    assert [n.op.name for n in readers] == ["parameter", "attention", "attention"]
    with pytest.raises(flashc.FlashError, match="has no attribute `weight`"):
        flashc.loads("model M() {\n  input x: float32[B, 4]\n  h = x |> relu\n"
                     "  output y = x |> linear(4, weight = h.weight)\n}\n")
