"""The shipped specs: parameter counts, PyTorch/ONNX parity with dynamic dims, ONNX validity,
and the text classifier against torch.nn.TransformerEncoderLayer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from spec_headers import header_count

import flashc

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# The numbers the header comments state; the test also parses them from the files.
PUBLISHED = {
    "lenet5": 61_706,
    "gpt2": 124_439_808,
    "text_classifier": 1_709_828,
    "mlp_digits": 17_226,
    "encoder4": 3_159_552,
}
SMALL_GPT2 = dict(depth=2, d=64, heads=4, vocab=100, ctx=32)
REDUCED = {"gpt2": SMALL_GPT2, "text_classifier": dict(vocab=200, ctx=32, d=32, heads=4, ff=64, depth=2, classes=3)}

# (batch, seq) pairs: two batch sizes and, where there is a T, two sequence lengths.
SHAPES = [(2, 5), (3, 11)]


def spec_names() -> list[str]:
    """The foundation's four specs; the model library's are tested in test_model_library.py."""
    return sorted(PUBLISHED)


def all_spec_names() -> list[str]:
    return sorted(p.stem for p in SPECS.glob("*.flash"))


def load(name: str) -> flashc.Spec:
    return flashc.load(SPECS / f"{name}.flash", **REDUCED.get(name, {}))


def make_inputs(spec: flashc.Spec, batch: int, seq: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs for every declared input; B is bound to batch, other symbolic dims (T, S) to seq."""
    feeds: dict[str, np.ndarray] = {}
    vocab = spec.graph.params.get("vocab")
    for v in spec.graph.inputs:
        shape = tuple(batch if str(d) == "B" else d if isinstance(d, int) else seq for d in v.type.shape)  # T, S: seq
        if v.type.dtype == "float32":
            feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
        elif v.type.dtype == "int64":
            feeds[v.name] = rng.integers(0, vocab, shape).astype(np.int64)
        elif v.type.dtype == "bool":
            mask = np.zeros(shape, dtype=bool)
            mask[0, -2:] = True  # padding at the end of the first sequence
            mask[-1, seq // 2] = True  # and one in the middle of the last
            assert not mask.all(axis=1).any()
            feeds[v.name] = mask
        else:
            raise AssertionError(f"no test data for {v.type}")
    return feeds


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


# --- (a) parameter counts ---------------------------------------------------------------------


def test_the_foundation_specs_exist():
    assert set(PUBLISHED) <= set(all_spec_names())


@pytest.mark.parametrize("name", all_spec_names())
def test_parameter_count_matches_header_comment(name):
    """Every spec in specs/ states its parameter count in its header, and check agrees."""
    path = SPECS / f"{name}.flash"
    stated = header_count(path)
    if name in PUBLISHED:
        assert stated == PUBLISHED[name], f"{name}: header says {stated:,}"
    assert flashc.load(path).parameter_count == stated


def test_gpt2_full_size_parameter_count():
    spec = flashc.load(SPECS / "gpt2.flash")
    assert spec.parameter_count == 124_439_808
    assert spec.graph.params["vocab"] == 50257 and spec.graph.params["d"] == 768


# --- (b) PyTorch vs onnxruntime, at two batch sizes and two lengths -----------------------------


@pytest.mark.parametrize("name", spec_names())
def test_onnx_matches_torch_with_dynamic_dims(name):
    spec = load(name)
    model = spec.to_torch(seed=11).eval()
    sess = session(spec.to_onnx(weights=model.state_dict()))
    rng = np.random.default_rng(0)
    seen_shapes = set()
    for batch, seq in SHAPES:
        feeds = make_inputs(spec, batch, seq, rng)
        got = sess.run(None, feeds)
        with torch.no_grad():
            want = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
        want = want if isinstance(want, tuple) else (want,)
        assert len(got) == len(want) == len(spec.graph.outputs)
        for g, w in zip(got, want):
            assert g.dtype == np.float32
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)
        seen_shapes.add(got[0].shape)
    assert len(seen_shapes) == 2  # the output really changed shape with B (and T)


@pytest.mark.parametrize("name", spec_names())
def test_onnx_and_torch_agree_on_seeded_weights(name):
    """to_onnx(seed=s) and to_torch(seed=s) hold the same numbers without passing weights."""
    spec = load(name)
    model = spec.to_torch(seed=5).eval()
    sess = session(spec.to_onnx(seed=5))
    feeds = make_inputs(spec, 2, 6, np.random.default_rng(1))
    with torch.no_grad():
        want = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
    np.testing.assert_allclose(sess.run(None, feeds)[0], want.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("opset", [17, 21])
@pytest.mark.parametrize("name", ["gpt2", "text_classifier"])
def test_attention_specs_at_older_opsets(name, opset):
    """Below opset 23 attention is lowered without the fused op; results must not change."""
    spec = load(name)
    model = spec.to_torch(seed=2).eval()
    proto = spec.to_onnx(weights=model.state_dict(), opset=opset)
    assert "Attention" not in {n.op_type for n in proto.graph.node}
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    onnx.checker.check_model(proto, full_check=True)
    sess = session(proto)
    rng = np.random.default_rng(3)
    for batch, seq in SHAPES:
        feeds = make_inputs(spec, batch, seq, rng)
        with torch.no_grad():
            want = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
        np.testing.assert_allclose(sess.run(None, feeds)[0], want.numpy(), atol=1e-4, rtol=0)


# --- (c) the ONNX model itself ----------------------------------------------------------------


def dims(info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", spec_names())
def test_onnx_model_is_valid_and_named(name):
    spec = load(name)
    proto = spec.to_onnx(seed=0)
    onnx.checker.check_model(proto, full_check=True)

    assert [i.name for i in proto.graph.input] == [v.name for v in spec.graph.inputs]
    assert [o.name for o in proto.graph.output] == [n for n, _ in spec.graph.outputs]
    for info, v in zip(proto.graph.input, spec.graph.inputs):
        assert dims(info) == [d if isinstance(d, int) else str(d) for d in v.type.shape]
    for info, (_, v) in zip(proto.graph.output, spec.graph.outputs):
        assert dims(info) == [d if isinstance(d, int) else str(d) for d in v.type.shape]
    all_dims = [d for info in [*proto.graph.input, *proto.graph.output] for d in dims(info)]
    assert "B" in all_dims
    if any("T" in map(str, v.type.shape) for v in spec.graph.inputs):
        assert "T" in all_dims

    props = {p.key: p.value for p in proto.metadata_props}
    assert props["flashc_version"] == flashc.__version__
    assert re.fullmatch(r"[0-9a-f]{64}", props["spec_sha256"])
    assert props["spec_sha256"] == spec.graph.source_hash

    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [23]
    # initializers carry the state-dict names
    assert {i.name for i in proto.graph.initializer} >= set(spec.graph.weights)


def test_onnx_symbolic_dims_by_name():
    proto = load("gpt2").to_onnx()
    assert dims(proto.graph.input[0]) == ["B", "T"]
    assert dims(proto.graph.output[0]) == ["B", "T", 100]
    proto = load("lenet5").to_onnx()
    assert dims(proto.graph.input[0]) == ["B", 1, 32, 32]
    assert dims(proto.graph.output[0]) == ["B", 10]
    proto = load("text_classifier").to_onnx()
    assert [i.name for i in proto.graph.input] == ["tokens", "padding"]
    assert dims(proto.graph.input[1]) == ["B", "T"]
    assert proto.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.BOOL


def test_spec_sha256_is_the_hash_of_the_file():
    import hashlib

    path = SPECS / "lenet5.flash"
    proto = flashc.load(path).to_onnx()
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["spec_sha256"] == hashlib.sha256(path.read_text().encode()).hexdigest()


def test_gpt2_uses_fused_ops_at_default_opset():
    proto = load("gpt2").to_onnx()
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Attention") == SMALL_GPT2["depth"]
    assert ops.count("LayerNormalization") == 2 * SMALL_GPT2["depth"] + 1
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [23]


def test_onnx_weights_from_numpy_state_dict_and_safetensors(tmp_path):
    from safetensors.numpy import save_file

    spec = load("gpt2")
    arrays = spec.init_weights(6)
    save_file(arrays, str(tmp_path / "w.safetensors"))
    feeds = make_inputs(spec, 2, 4, np.random.default_rng(0))
    with torch.no_grad():
        want = spec.to_torch(seed=6).eval()(torch.from_numpy(feeds["tokens"])).numpy()
    for weights in (arrays, spec.to_torch(seed=6).state_dict(), tmp_path / "w.safetensors",
                    str(tmp_path / "w.safetensors")):
        got = session(spec.to_onnx(weights=weights)).run(None, feeds)[0]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_onnx_weights_that_do_not_fit_are_an_error():
    spec = load("mlp_digits")
    weights = spec.init_weights(0)
    weights["linear.weight"] = weights["linear.weight"].T
    del weights["linear_2.bias"]
    with pytest.raises(flashc.FlashError) as exc:
        spec.to_onnx(weights=weights)
    assert "`linear.weight` has shape [64, 128], the spec needs [128, 64]" in str(exc.value)
    assert "`linear_2.bias` is missing" in str(exc.value)


def test_onnx_written_to_path_equals_the_in_memory_model(tmp_path):
    spec = load("mlp_digits")
    target = tmp_path / "mlp.onnx"
    assert spec.to_onnx(target, seed=4) == target
    written, memory = onnx.load(str(target)), spec.to_onnx(seed=4)
    assert written.graph.node == memory.graph.node
    assert sorted(i.SerializeToString() for i in written.graph.initializer) == sorted(
        i.SerializeToString() for i in memory.graph.initializer)


# --- GPT-2: tied output projection ------------------------------------------------------------


def test_gpt2_tied_output_weight():
    spec = load("gpt2")
    embeddings = [n for n in spec.graph.nodes if n.op.name == "embedding"]
    assert sorted(dict(n.weights)["weight"] for n in embeddings) == ["wpe.weight", "wte.weight"]
    vocab_by_d = [p for p, w in spec.graph.weights.items() if w.spec.shape == (100, 64)]
    assert vocab_by_d == ["wte.weight"]  # the only [vocab, d] table: the output reuses it
    # every node that reads wte.weight: the token embedding and the output linear
    readers = sorted(n.op.name for n in spec.graph.nodes if "wte.weight" in dict(n.weights).values())
    assert readers == ["embedding", "linear"]

    model = spec.to_torch(seed=0)
    state = model.state_dict()
    assert state["linear.weight"].data_ptr() == state["wte.weight"].data_ptr()
    assert model.linear.weight is model.wte.weight
    assert sum(p.numel() for p in model.parameters()) == spec.parameter_count

    proto = spec.to_onnx(weights=state)
    initializers = [i.name for i in proto.graph.initializer]
    assert initializers.count("wte.weight") == 1 and "linear.weight" not in initializers
    # the output projection reads the embedding table itself
    assert any(n.op_type == "Transpose" and list(n.input) == ["wte.weight"] for n in proto.graph.node)


def test_gpt2_train_section():
    train = flashc.load(SPECS / "gpt2.flash", **SMALL_GPT2).train
    assert train.optimizer.name == "adamw"
    assert train.optimizer.kwargs["betas"] == (0.9, 0.95)
    assert train.loss.name == "cross_entropy" and train.loss.args == ("logits", "targets")
    assert dict(train.loss.options)["label_smoothing"] == 0.1
    assert train.schedule.name == "warmup_cosine" and train.schedule.kwargs["warmup"] == 2000
    assert train.batch == 32 and train.clip_grad == 1.0
    assert train.early_stop.kwargs["restore_best"] is True


# --- the text classifier is nn.TransformerEncoderLayer ------------------------------------------


def test_text_classifier_matches_transformer_encoder_layer():
    cfg = REDUCED["text_classifier"]
    d, heads, ff, depth = cfg["d"], cfg["heads"], cfg["ff"], cfg["depth"]
    spec = load("text_classifier")
    torch.manual_seed(0)
    tok_emb = torch.nn.Embedding(cfg["vocab"], d)
    pos_emb = torch.nn.Embedding(cfg["ctx"], d)
    layers = [
        torch.nn.TransformerEncoderLayer(d_model=d, nhead=heads, dim_feedforward=ff, dropout=0.0, activation="relu",
                                         batch_first=True, norm_first=False)
        for _ in range(depth)
    ]
    head = torch.nn.Linear(d, cfg["classes"])
    for layer in layers:  # non-trivial norms, so a swapped layernorm would show
        for norm in (layer.norm1, layer.norm2):
            torch.nn.init.normal_(norm.weight, 1.0, 0.2)
            torch.nn.init.normal_(norm.bias, 0.0, 0.2)

    state = {"embedding.weight": tok_emb.weight, "embedding_1.weight": pos_emb.weight,
             "linear.weight": head.weight, "linear.bias": head.bias}
    for i, layer in enumerate(layers):
        p = f"encoder.{i}."
        q, k, v = layer.self_attn.in_proj_weight.chunk(3)
        qb, kb, vb = layer.self_attn.in_proj_bias.chunk(3)
        state.update({
            p + "attention.q.weight": q, p + "attention.q.bias": qb,
            p + "attention.k.weight": k, p + "attention.k.bias": kb,
            p + "attention.v.weight": v, p + "attention.v.bias": vb,
            p + "attention.out.weight": layer.self_attn.out_proj.weight,
            p + "attention.out.bias": layer.self_attn.out_proj.bias,
            p + "layernorm.weight": layer.norm1.weight, p + "layernorm.bias": layer.norm1.bias,
            p + "linear.weight": layer.linear1.weight, p + "linear.bias": layer.linear1.bias,
            p + "linear_1.weight": layer.linear2.weight, p + "linear_1.bias": layer.linear2.bias,
            p + "layernorm_1.weight": layer.norm2.weight, p + "layernorm_1.bias": layer.norm2.bias,
        })
    assert set(state) == set(spec.graph.weights)
    state = {k: v.detach().clone() for k, v in state.items()}
    model = spec.to_torch(weights=state).eval()
    sess = session(spec.to_onnx(weights=state))

    rng = np.random.default_rng(7)
    for batch, seq in SHAPES:
        feeds = make_inputs(spec, batch, seq, rng)
        tokens, padding = torch.from_numpy(feeds["tokens"]), torch.from_numpy(feeds["padding"])
        with torch.no_grad():
            h = tok_emb(tokens) + pos_emb(torch.arange(seq))
            for layer in layers:
                layer.train()  # dropout is 0; train() keeps PyTorch off its fused fast path
                h = layer(h, src_key_padding_mask=padding)
            want = head(h.mean(dim=1))
            got = model(tokens, padding)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(sess.run(None, feeds)[0], want.numpy(), atol=1e-4, rtol=0)


def test_text_classifier_padding_changes_the_result():
    """The mask is really applied: hiding a key changes the logits."""
    spec = load("text_classifier")
    model = spec.to_torch(seed=1).eval()
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 200, (2, 6)))
    none = torch.zeros(2, 6, dtype=torch.bool)
    some = none.clone()
    some[0, -2:] = True
    with torch.no_grad():
        a, b = model(tokens, none), model(tokens, some)
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[0], b[0])


@pytest.mark.parametrize("name", ["lenet5", "mlp_digits", "text_classifier"])
def test_specs_have_train_sections(name):
    train = flashc.load(SPECS / f"{name}.flash").train
    assert train is not None
    assert train.loss.name == "cross_entropy"
    assert [n for n, _ in train.targets] == ["label"]
