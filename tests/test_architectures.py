"""Issue 9's eight architectures, each written in specs/ as its paper describes it: the spec uses
the op the paper names (no stand-in), and its PyTorch module and its ONNX graph agree (<= 1e-4) at
small sizes, two batch sizes and, where a length is symbolic, two lengths. Each one's equality
with an independent reference is tested beside it: test_zoo_vision (MobileNetV2, DCGAN,
SE-ResNet-50), test_attention_variants_reference (TinyLlama), test_scan (Bahdanau),
test_zoo_multimodal (CLIP), test_moe (Mixtral), test_zoo_encoder_decoder (Whisper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"

# name -> (spec, model or None, small sizes, the ops the paper's description needs, runs of symbolic sizes)
ARCHITECTURES: dict[str, tuple[str, str | None, dict[str, Any], set[str], list[dict[str, int]]]] = {
    "MobileNetV2 (relu6)": ("mobilenet_v2", None, {"classes": 10}, {"relu6", "conv2d", "batchnorm"},
                            [{"B": 1, "H": 32, "W": 32}, {"B": 2, "H": 40, "W": 24}]),
    "DCGAN generator": ("dcgan", None, {"ngf": 8}, {"conv_transpose2d", "batchnorm", "relu", "tanh"},
                        [{"B": 1}, {"B": 3}]),
    "LLaMA decoder block": ("tinyllama", None, dict(vocab=50, d=32, heads=4, kv_heads=2, ff=48, depth=2),
                            {"attention", "rmsnorm", "silu"}, [{"B": 1, "T": 5}, {"B": 2, "T": 9}]),
    "GRU encoder-decoder with Bahdanau attention": ("bahdanau", None, {}, {"scan", "gru", "gru_cell", "softmax"},
                                                    [{"B": 1, "S": 6, "T": 4}, {"B": 3, "S": 3, "T": 7}]),
    "CLIP dual encoder": ("clip_vit_b32", None, dict(vocab=60, ctx=16, text_d=32, text_heads=4, text_ff=48,
                                                     text_depth=1, size=32, patch=8, vision_d=24, vision_heads=3,
                                                     vision_ff=40, vision_depth=1, embed=20),
                          {"exp", "normalize", "einsum", "take_along_axis"},
                          [{"B": 1, "T": 5, "N": 2}, {"B": 3, "T": 8, "N": 1}]),
    "top-2 mixture of experts": ("mixtral", None, dict(vocab=50, d=32, heads=4, kv_heads=2, ff=48, experts=4,
                                                       depth=1),
                                 {"moe_route", "moe_dispatch", "moe_combine"}, [{"B": 1, "T": 6}, {"B": 2, "T": 3}]),
    "Whisper-style audio front end": ("whisper_tiny", None, dict(vocab=60, mels=10, d=32, heads=4, ff=48,
                                                                 encoder_depth=1, decoder_depth=1, audio_ctx=8,
                                                                 text_ctx=16),
                                      {"conv1d", "gelu", "positions"},
                                      [{"B": 1, "L": 16, "T": 3}, {"B": 2, "L": 9, "T": 5}]),
    "squeeze-and-excitation net": ("se_resnet50", None, {"width": 8, "classes": 10},
                                   {"adaptive_avg_pool2d", "sigmoid", "mul"},
                                   [{"B": 1, "H": 32, "W": 32}, {"B": 2, "H": 24, "W": 40}]),
}


def load(name: str) -> flashc.Spec:
    file, model, sizes, _, _ = ARCHITECTURES[name]
    return flashc.load_model(SPECS / f"{file}.flash", model, sizes)


def feeds(spec: flashc.Spec, sizes: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    params, out = spec.graph.params, {}
    for v in spec.graph.inputs:
        shape = tuple(d if isinstance(d, int) else sizes[str(d)] for d in v.type.shape)
        if v.type.dtype == "int64":
            out[v.name] = rng.integers(0, params.get("vocab", params.get("src_vocab")), shape).astype(np.int64)
        else:
            out[v.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def all_ops(graph) -> set[str]:
    """Every op of the graph, inside scan steps too."""
    return {n.op.name for n in graph.walk()}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_written_with_the_papers_ops(name):
    assert ARCHITECTURES[name][3] <= all_ops(load(name).graph), name


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_torch_and_onnxruntime_agree(name):
    spec = load(name)
    model = spec.to_torch(seed=1).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # batchnorm statistics that are not the identity
        for key, buf in model.named_buffers():
            if key.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=gen) * 0.1)
            elif key.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
    session = ort.InferenceSession(spec.to_onnx(weights=model.state_dict()).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    shapes = set()
    for sizes in ARCHITECTURES[name][4]:
        inputs = feeds(spec, sizes, rng)
        with torch.no_grad():
            want = model(*(torch.from_numpy(inputs[v.name]) for v in spec.graph.inputs))
        want = want if isinstance(want, tuple) else (want,)
        got = session.run(None, inputs)
        for g, w in zip(got, want, strict=True):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-4, err_msg=name)
        shapes.add(tuple(g.shape for g in got))
    assert len(shapes) == 2  # the outputs followed the batch (and length) sizes
