"""CLIP (two towers, a learned temperature) against Hugging Face's CLIPModel built from a small
random config (nothing is downloaded), in PyTorch and onnxruntime (<= 1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_reference import assert_matches_reference, perturb, saved

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_clip_matches_clip_model(tmp_path):
    """Its state dict as it is, read through specs/clip_vit_b32.hf.map."""
    mod = pytest.importorskip("transformers.models.clip.modeling_clip")
    cfg = pytest.importorskip("transformers.models.clip.configuration_clip")
    text = cfg.CLIPTextConfig(vocab_size=60, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=16, bos_token_id=58,
                              eos_token_id=59)  # the end token is the highest id: both pooling rules agree
    vision = cfg.CLIPVisionConfig(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3,
                                  image_size=32, patch_size=8)
    config = cfg.CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=20)
    config._attn_implementation = "eager"
    config.text_config._attn_implementation = config.vision_config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = perturb(mod.CLIPModel(config), seed=0)
    with torch.no_grad():
        model.logit_scale.fill_(2.6592 + 0.3)  # a temperature that is not the starting one
    spec = flashc.load(SPECS / "clip_vit_b32.flash", vocab=60, ctx=16, text_d=32, text_heads=4, text_ff=48,
                       text_depth=2, size=32, patch=8, vision_d=24, vision_heads=3, vision_ff=40, vision_depth=2,
                       embed=20)
    assert spec.parameter_count == sum(p.numel() for p in model.parameters())
    weights = saved(model, tmp_path)
    rng = np.random.default_rng(0)
    for texts, images, length in ((2, 3, 7), (1, 2, 12)):
        ids = rng.integers(0, 59, (texts, length)).astype(np.int64)
        ids[:, -2] = 59  # the end token (the highest id) before the last position: pooling reads it there
        pixels = rng.standard_normal((images, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(pixels))
        want = [out.text_embeds, out.image_embeds, out.logits_per_text, out.logits_per_image]
        assert_matches_reference(spec, weights, {"input_ids": ids, "pixel_values": pixels},
                                 [w.numpy() for w in want])
