"""The model library in specs/: published parameter counts, and the PyTorch and ONNX
lowerings of each model agreeing at a reduced size, at two batch sizes (and two
sequence lengths or image sizes where those are symbolic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from spec_headers import header_comment, header_count

import flashc

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# name -> the count its header comment states (the test also parses it from the file)
COUNTS = {
    "resnet18": 11_689_512,
    "vit_b16": 86_567_656,
    "bert_base": 109_482_240,
    "transformer": 44_140_544,
    "translation": 7_709_696,
    "unet": 117_090,
    "lstm_lm": 19_780_400,
    "srcnn": 8_129,
    "espcn": 22_729,
}
# the published figures among them, from the papers / reference implementations
PUBLISHED = {"resnet18", "vit_b16", "bert_base", "transformer", "srcnn"}

REDUCED = {
    "resnet18": dict(width=8, size=32, classes=10),
    "vit_b16": dict(size=32, patch=8, d=32, heads=4, mlp=64, depth=2, classes=10),
    "bert_base": dict(vocab=60, ctx=16, d=32, heads=4, ff=64, depth=2),
    "transformer": dict(d=32, heads=4, ff=64, depth=2),
    "translation": dict(vocab=60, ctx=16, d=32, heads=4, ff=64, depth=2),
    "unet": dict(width=4, size=16),
    "lstm_lm": dict(vocab=60, d=16, hidden=24),
    "srcnn": {},
    "espcn": {},
}
# (batch, sizes of the symbolic dims other than B) for the two runs
RUNS = [(1, {"T": 5, "S": 7, "H": 6, "W": 5}), (3, {"T": 9, "S": 4, "H": 9, "W": 11})]
ATOL = 1e-4


def load(name: str) -> flashc.Spec:
    return flashc.load(SPECS / f"{name}.flash", **REDUCED[name])


def make_inputs(spec: flashc.Spec, batch: int, sizes: dict[str, int], rng: np.random.Generator) -> dict:
    feeds: dict[str, np.ndarray] = {}
    params = spec.graph.params
    for v in spec.graph.inputs:
        shape = tuple(batch if str(d) == "B" else sizes[str(d)] if str(d) in sizes else int(d) for d in v.type.shape)
        if v.type.dtype == "float32":
            feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
        elif v.type.dtype == "int64":
            high = params["types"] if v.name == "token_types" else params["vocab"]
            feeds[v.name] = rng.integers(0, high, shape).astype(np.int64)
        elif v.type.dtype == "bool":
            mask = np.zeros(shape, dtype=bool)
            mask[0, -1] = True  # padding at the end of the first sequence
            mask[-1, 1] = True  # and one inside the last
            feeds[v.name] = mask
        else:
            raise AssertionError(f"no test data for {v.type}")
    return feeds


def eval_model(spec: flashc.Spec, seed: int) -> torch.nn.Module:
    """The torch module with seeded weights and non-trivial batchnorm statistics."""
    model = spec.to_torch(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
    return model.eval()


def session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def compare(spec: flashc.Spec, model: torch.nn.Module, sess: ort.InferenceSession, seed: int) -> set:
    rng = np.random.default_rng(seed)
    shapes = set()
    for batch, sizes in RUNS:
        feeds = make_inputs(spec, batch, sizes, rng)
        got = sess.run(None, feeds)
        with torch.no_grad():
            want = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
        want = want if isinstance(want, tuple) else (want,)
        assert len(got) == len(want) == len(spec.graph.outputs)
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=ATOL, rtol=0)
        shapes.add(tuple(g.shape for g in got))
    return shapes


def test_every_library_spec_exists():
    assert all((SPECS / f"{name}.flash").is_file() for name in COUNTS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_count_matches_header(name):
    path = SPECS / f"{name}.flash"
    stated = header_count(path)
    assert stated == COUNTS[name], f"{name}: header says {stated:,}"
    if name in PUBLISHED:
        assert "Published parameter count" in header_comment(path)
    assert flashc.load(path).parameter_count == stated


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_reduced_torch_module_has_the_spec_parameters(name):
    spec = load(name)
    model = spec.to_torch(seed=0)
    assert sum(p.numel() for p in model.parameters()) == spec.parameter_count
    state = model.state_dict()
    assert set(spec.graph.weights) <= set(state)
    for extra in set(state) - set(spec.graph.weights):  # a tied weight appears under both layers' names
        assert any(state[extra].data_ptr() == state[k].data_ptr() for k in spec.graph.weights), extra


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_onnx_matches_torch_at_two_batch_sizes(name):
    spec = load(name)
    model = eval_model(spec, seed=3)
    sess = session(spec.to_onnx(weights=model.state_dict()))
    shapes = compare(spec, model, sess, seed=0)
    assert len(shapes) == 2  # the outputs really changed shape with the batch


@pytest.mark.parametrize("name", ["transformer", "translation", "bert_base"])
def test_attention_specs_at_opset_17(name):
    """Below opset 23, attention (cross, causal, padded) is decomposed; results must not change."""
    spec = load(name)
    model = eval_model(spec, seed=4)
    proto = spec.to_onnx(weights=model.state_dict(), opset=17)
    assert "Attention" not in {n.op_type for n in proto.graph.node}
    compare(spec, model, session(proto), seed=1)


# --- what each architecture is made of ---------------------------------------------------------


def test_resnet18_layout():
    weights = flashc.load(SPECS / "resnet18.flash").graph.weights
    shapes = {k: v.spec.shape for k, v in weights.items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["fc.weight"] == (1000, 512)
    downsample = sorted(k for k in shapes if ".downsample." in k and len(shapes[k]) == 4)
    assert downsample == [f"layer{i}.0.downsample.0.weight" for i in (2, 3, 4)]  # torchvision's names
    assert shapes["layer3.0.downsample.0.weight"] == (256, 128, 1, 1)
    assert shapes["layer4.1.conv2.weight"] == (512, 512, 3, 3)
    convs = [k for k in shapes if k.endswith("weight") and len(shapes[k]) == 4]
    assert len(convs) == 20 and not any(k.replace("weight", "bias") in shapes for k in convs)
    batchnorms = [k for k in shapes if k.endswith("running_mean")]
    assert len(batchnorms) == 20


def test_resnet18_full_size_output():
    spec = flashc.load(SPECS / "resnet18.flash")
    assert spec.inputs == {"image": "float32[B, 3, 224, 224]"}
    assert spec.outputs == {"logits": "float32[B, 1000]"}


def test_vit_b16_layout():
    spec = flashc.load(SPECS / "vit_b16.flash")
    shapes = {k: v.spec.shape for k, v in spec.graph.weights.items()}
    assert shapes["conv_proj.weight"] == (768, 3, 16, 16)
    assert sorted(s for s in shapes.values() if s[:1] == (1,)) == [(1, 1, 768), (1, 197, 768)]
    assert sum(k.endswith("self_attention.q.weight") for k in shapes) == 12
    assert shapes["head.weight"] == (1000, 768)
    eps = {n.op.eps for n in spec.graph.nodes if n.op.name == "layernorm"}
    assert eps == {1e-6}
    assert spec.outputs == {"logits": "float32[B, 1000]"}


def test_bert_base_layout():
    spec = flashc.load(SPECS / "bert_base.flash")
    shapes = {k: v.spec.shape for k, v in spec.graph.weights.items()}
    assert shapes["word_embeddings.weight"] == (30522, 768)
    assert shapes["position_embeddings.weight"] == (512, 768)
    assert shapes["token_type_embeddings.weight"] == (2, 768)
    assert shapes["pooler.weight"] == (768, 768)
    assert {n.op.eps for n in spec.graph.nodes if n.op.name == "layernorm"} == {1e-12}
    assert spec.outputs == {"sequence": "float32[B, T, 768]", "pooled": "float32[B, 768]"}


def test_bert_padding_is_masked():
    """Changing a padded token changes nothing at the other positions, nor the pooled output."""
    spec = load("bert_base")
    model = spec.to_torch(seed=2).eval()
    rng = np.random.default_rng(5)
    tokens = torch.from_numpy(rng.integers(1, 60, (2, 6)))
    types = torch.zeros(2, 6, dtype=torch.int64)
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[:, -2:] = True
    other = tokens.clone()
    other[:, -2:] = 0
    with torch.no_grad():
        a_seq, a_pool = model(tokens, types, padding)
        b_seq, b_pool = model(other, types, padding)
    torch.testing.assert_close(a_seq[:, :-2], b_seq[:, :-2], atol=1e-6, rtol=0)
    torch.testing.assert_close(a_pool, b_pool, atol=1e-6, rtol=0)


def test_transformer_matches_torch_state_dict_shapes():
    """Every nn.Transformer() weight, under flashc's names, has the spec's shape."""
    spec = flashc.load(SPECS / "transformer.flash")
    shapes = {k: v.spec.shape for k, v in spec.graph.weights.items()}
    ours: dict[str, tuple] = {}
    for name, p in torch.nn.Transformer(batch_first=True).state_dict().items():
        if name.endswith("in_proj_weight") or name.endswith("in_proj_bias"):
            kind = name.rsplit("_", 1)[1]
            for part in "qkv":
                ours[name.replace(f"in_proj_{kind}", f"{part}.{kind}")] = (p.shape[0] // 3, *p.shape[1:])
        else:
            ours[name.replace("out_proj", "out")] = tuple(p.shape)
    assert ours == shapes


def test_translation_shares_one_table_for_source_target_and_output():
    spec = load("translation")
    readers = sorted(n.op.name for n in spec.graph.nodes if "embed.weight" in dict(n.weights).values())
    assert readers == ["embedding", "embedding", "linear"]
    assert [k for k, w in spec.graph.weights.items() if w.spec.shape == (60, 32)] == ["embed.weight"]
    model = spec.to_torch(seed=0)
    assert model.linear.weight is model.embed.weight


def test_translation_is_causal_in_the_target():
    """Changing a later target token leaves earlier positions' logits unchanged."""
    spec = load("translation")
    model = spec.to_torch(seed=1).eval()
    rng = np.random.default_rng(2)
    src = torch.from_numpy(rng.integers(0, 50, (2, 5)))
    pad = torch.zeros(2, 5, dtype=torch.bool)
    tgt = torch.from_numpy(rng.integers(0, 60, (2, 6)))
    changed = tgt.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 60
    with torch.no_grad():
        a, b = model(src, pad, tgt), model(src, pad, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_unet_keeps_the_image_size():
    spec = flashc.load(SPECS / "unet.flash")
    assert spec.outputs == {"logits": "float32[B, 2, 64, 64]"}
    assert {n.op.name for n in spec.graph.nodes} >= {"conv_transpose2d", "concat", "max_pool2d", "batchnorm"}


def test_super_resolution_output_sizes():
    assert flashc.load(SPECS / "srcnn.flash").outputs == {"y": "float32[B, 1, H, W]"}
    assert flashc.load(SPECS / "espcn.flash").outputs == {"y": "float32[B, 1, H * 3, W * 3]"}
    assert flashc.load(SPECS / "espcn.flash", scale=2).parameter_count == 1_664 + 18_464 + 32 * 9 * 4 + 4


def test_lstm_lm_layout():
    spec = flashc.load(SPECS / "lstm_lm.flash")
    shapes = {k: v.spec.shape for k, v in spec.graph.weights.items()}
    assert shapes["rnn.weight_ih_l1"] == (4 * 650, 650)
    assert shapes["rnn.bias_hh_l0"] == (4 * 650,)
    assert spec.outputs == {"logits": "float32[B, T, 10000]"}
