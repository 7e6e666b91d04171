"""Decoder-only language models of the zoo against Hugging Face `transformers` built from small
random configs (nothing is downloaded): specs/mistral.flash against MistralForCausalLM (grouped-query
attention, rotary embeddings, a sliding window shorter than the sequence). TinyLlama and Mixtral
have theirs in test_attention_variants_reference.py and test_moe.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_reference import assert_matches_reference, perturb, saved

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_mistral_matches_mistral_for_causal_lm(tmp_path):
    """Its state dict as it is, read through specs/mistral.hf.map."""
    mod = pytest.importorskip("transformers.models.mistral.modeling_mistral")
    config = mod.MistralConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, sliding_window=4, rms_norm_eps=1e-5,
                               max_position_embeddings=64, tie_word_embeddings=False,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = perturb(mod.MistralForCausalLM(config), seed=0)
    spec = flashc.load(SPECS / "mistral.flash", vocab=50, d=32, heads=4, kv_heads=2, ff=48, depth=2, window=4)
    assert spec.parameter_count == sum(p.numel() for p in model.parameters())
    weights = saved(model, tmp_path)
    rng = np.random.default_rng(0)
    for batch, length in ((2, 7), (1, 12)):  # longer than the window: the window masks something
        tokens = rng.integers(0, 50, (batch, length)).astype(np.int64)
        with torch.no_grad():
            want = model(input_ids=torch.from_numpy(tokens)).logits.numpy()
        assert_matches_reference(spec, weights, {"tokens": tokens}, want)


def test_mistral_window_changes_the_result():
    """The same weights without a window give other logits at a length past it (the window is live)."""
    spec = flashc.load(SPECS / "mistral.flash", vocab=50, d=32, heads=4, kv_heads=2, ff=48, depth=1, window=3)
    wide = flashc.load(SPECS / "mistral.flash", vocab=50, d=32, heads=4, kv_heads=2, ff=48, depth=1, window=100)
    weights = spec.init_weights(1)
    tokens = torch.from_numpy(np.random.default_rng(1).integers(0, 50, (1, 8)))
    with torch.no_grad():
        a = spec.to_torch(weights=weights).eval()(tokens)
        b = wide.to_torch(weights=weights).eval()(tokens)
    torch.testing.assert_close(a[:, :3], b[:, :3], atol=1e-6, rtol=0)  # inside the window: the same
    assert not torch.allclose(a[:, 3:], b[:, 3:], atol=1e-4)
