"""CLIP (two towers, a learned temperature) against Hugging Face's CLIPModel built from a small
random config (nothing is downloaded), in PyTorch and onnxruntime (<= 1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_reference import assert_matches_reference, numpy_state, perturb

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"
ATTENTION_NAMES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "out"}


def clip_to_flashc(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CLIPModel's names under the spec's: attention projections q/k/v/out, two bare parameters as `weight`."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue  # a buffer of 0 .. n - 1: the spec makes its own positions
        if key in ("logit_scale", "vision_model.embeddings.class_embedding"):
            out[f"{key}.weight"] = value.reshape(-1)
            continue
        out[".".join(ATTENTION_NAMES.get(p, p) for p in key.split("."))] = value
    return out


def test_clip_matches_clip_model():
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
    weights = clip_to_flashc(numpy_state(model))
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
