"""Encoder-decoder models of the zoo against Hugging Face `transformers` built from small random
configs (nothing is downloaded), in PyTorch and onnxruntime (<= 1e-4): specs/t5_small.flash
against T5ForConditionalGeneration (relative position bias shared per stack, tied and rescaled
output projection), specs/whisper_tiny.flash against WhisperForConditionalGeneration (conv front
end, symbolic frame count, cross-attention, tied output). The reference's state dict is saved as
it is and read through the map beside the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_reference import assert_matches_reference, perturb, run_both, saved

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_t5_matches_t5_for_conditional_generation(tmp_path):
    """Its state dict as it is, tied copies included, read through specs/t5_small.hf.map."""
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
    weights = saved(model, tmp_path)
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


def test_whisper_matches_whisper_for_conditional_generation(tmp_path):
    """Conv front end, positions after the stride-2 conv, cross-attention, tied output; the state dict
    as it is through specs/whisper_tiny.hf.map. Hugging Face takes only 2 * max_source_positions frames;
    other frame counts compare the spec's two backends."""
    mod = pytest.importorskip("transformers.models.whisper.modeling_whisper")
    config = mod.WhisperConfig(vocab_size=60, num_mel_bins=10, d_model=32, encoder_layers=2, decoder_layers=2,
                               encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                               decoder_ffn_dim=48, max_source_positions=6, max_target_positions=16,
                               pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                               dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    config._attn_implementation = "eager"
    torch.manual_seed(1)
    model = perturb(mod.WhisperForConditionalGeneration(config), seed=1)
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    assert model.model.encoder.layers[0].self_attn.k_proj.bias is None
    spec = flashc.load(SPECS / "whisper_tiny.flash", vocab=60, mels=10, d=32, heads=4, ff=48, encoder_depth=2,
                       decoder_depth=2, audio_ctx=6, text_ctx=16)
    assert spec.parameter_count == sum(p.numel() for p in model.parameters())
    weights = saved(model, tmp_path)
    rng = np.random.default_rng(1)
    for batch, target in ((2, 5), (1, 9)):
        features = rng.standard_normal((batch, 10, 12)).astype(np.float32)
        ids = rng.integers(0, 60, (batch, target)).astype(np.int64)
        with torch.no_grad():
            out = model(input_features=torch.from_numpy(features), decoder_input_ids=torch.from_numpy(ids))
        assert_matches_reference(spec, weights, {"input_features": features, "decoder_input_ids": ids},
                                 [out.encoder_last_hidden_state.numpy(), out.logits.numpy()])
    for frames, positions in ((9, 5), (11, 6), (4, 2)):  # shorter audio: (L - 1) // 2 + 1 positions
        feeds = {"input_features": rng.standard_normal((2, 10, frames)).astype(np.float32),
                 "decoder_input_ids": rng.integers(0, 60, (2, 4)).astype(np.int64)}
        got = run_both(spec, weights, feeds)
        assert got["torch"][0].shape == (2, positions, 32)
        for a, b in zip(got["torch"], got["onnxruntime"]):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)


def t5_model(mod):
    config = mod.T5Config(vocab_size=60, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, relative_attention_max_distance=12, dropout_rate=0.0,
                          feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0)
    return mod.T5ForConditionalGeneration(config), {"input_ids": (60, 7), "decoder_input_ids": (60, 5)}


def whisper_model(mod):
    config = mod.WhisperConfig(vocab_size=60, num_mel_bins=10, d_model=32, encoder_layers=2, decoder_layers=1,
                               encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                               decoder_ffn_dim=48, max_source_positions=6, max_target_positions=16,
                               pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    return mod.WhisperForConditionalGeneration(config), {"input_features": (None, 10, 12), "decoder_input_ids": (60, 4)}


@pytest.mark.parametrize("family", ["t5", "whisper"])
def test_new_from_hf_then_compile_reproduces_the_model(tmp_path, family):
    """`flashc new --from-hf` writes the zoo spec's body with the config's sizes and the zoo map;
    `flashc compile --weights FOLDER` of it gives the Hugging Face model's outputs in onnxruntime."""
    import onnxruntime as ort

    from flashc.cli import main

    mod = pytest.importorskip(f"transformers.models.{family}.modeling_{family}")
    torch.manual_seed(3)
    model, inputs = (t5_model if family == "t5" else whisper_model)(mod)
    model = perturb(model, seed=3)
    model.save_pretrained(tmp_path / "hf")
    spec, onnx_path = tmp_path / "model.flash", tmp_path / "model.onnx"
    assert main(["new", "--from-hf", str(tmp_path / "hf" / "config.json"), "-o", str(spec)]) == 0
    assert flashc.load(spec).parameter_count == sum(p.numel() for p in model.parameters())
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(onnx_path), "--weights",
                 str(tmp_path / "hf")]) == 0
    rng = np.random.default_rng(3)
    feeds = {name: (rng.standard_normal((2, *shape[1:])).astype(np.float32) if shape[0] is None
                    else rng.integers(1, shape[0], (2, shape[1])).astype(np.int64)) for name, shape in inputs.items()}
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    np.testing.assert_allclose(got["logits"], out.logits.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["encoder_last_hidden_state"], out.encoder_last_hidden_state.numpy(), rtol=0,
                               atol=1e-4)
