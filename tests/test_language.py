"""Language features, each shown by what the compiled model does (PyTorch and onnxruntime),
not by looking at the compiler's internals."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import flashc
from flashc import FlashError


def build(src: str, **overrides) -> flashc.Spec:
    return flashc.loads(src, **overrides)


def ort_run(spec: flashc.Spec, feeds: dict[str, np.ndarray], weights=None, seed: int = 0) -> list[np.ndarray]:
    proto = spec.to_onnx(weights=weights, seed=seed)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def state_numel(model: torch.nn.Module) -> int:
    """Trainable numbers, each shared Parameter counted once."""
    return sum(p.numel() for p in model.parameters())


# --- parameters and arithmetic ----------------------------------------------------------------

ARITH = """
model Arith(d = 8, heads = 2) {
  input x: float32[B, T, 2 * d]
  h = x |> linear(4 * d) |> linear(d // heads + 1)
  output y = h |> linear(d - heads)
  output split = x |> reshape((B, T, heads, 2 * d // heads))
}
"""


def test_arithmetic_on_parameters_in_shapes_and_args():
    spec = build(ARITH)
    assert spec.inputs == {"x": "float32[B, T, 16]"}
    assert spec.outputs == {"y": "float32[B, T, 6]", "split": "float32[B, T, 2, 8]"}
    # linear(16 -> 32), linear(32 -> 5), linear(5 -> 6)
    assert spec.parameter_count == (16 * 32 + 32) + (32 * 5 + 5) + (5 * 6 + 6)
    model = spec.to_torch(seed=0)
    y, split = model(randn(3, 5, 16))
    assert y.shape == (3, 5, 6) and split.shape == (3, 5, 2, 8)
    assert [p.shape for p in model.parameters()] == [(32, 16), (32,), (5, 32), (5,), (6, 5), (6,)]


def test_overrides_change_the_model():
    spec = build(ARITH, d=12, heads=3)
    assert spec.inputs == {"x": "float32[B, T, 24]"}
    assert spec.outputs == {"y": "float32[B, T, 9]", "split": "float32[B, T, 3, 8]"}
    assert spec.parameter_count == (24 * 48 + 48) + (48 * 5 + 5) + (5 * 9 + 9)
    y, split = spec.to_torch()(randn(2, 4, 24))
    assert y.shape == (2, 4, 9) and split.shape == (2, 4, 3, 8)
    assert spec.graph.params == {"d": 12, "heads": 3}


def test_overrides_from_file(tmp_path):
    path = tmp_path / "arith.flash"
    path.write_text(ARITH)
    assert flashc.load(path, d=4).outputs["y"] == "float32[B, T, 2]"
    assert flashc.load(path).outputs["y"] == "float32[B, T, 6]"


def test_unknown_override_is_an_error_with_a_hint():
    with pytest.raises(FlashError) as exc:
        build(ARITH, head=3)
    assert "unknown parameter `head`" in str(exc.value)
    assert "did you mean `heads`" in str(exc.value)


def test_override_of_the_wrong_kind_is_an_error():
    with pytest.raises(FlashError, match="cannot set `d`"):
        build(ARITH, d="wide")


def test_parameters_may_use_earlier_ones():
    spec = build("""
model M(d = 4, ff = 4 * d) {
  input x: float32[B, d]
  output y = x |> linear(ff)
}""")
    assert spec.outputs == {"y": "float32[B, 16]"}
    assert build("model M(d = 4, ff = 4 * d) {\n input x: float32[B, d]\n output y = x |> linear(ff)\n}",
                 ff=7).outputs == {"y": "float32[B, 7]"}


def test_wrong_shape_is_reported_before_running():
    with pytest.raises(FlashError) as exc:
        build("""
model M() {
  input x: float32[2, 6, 4]
  output y = x |> reshape((2, 5, 5))
}""")
    assert "cannot reshape" in str(exc.value)
    assert "<string>:4:" in str(exc.value)


# --- outputs ------------------------------------------------------------------------------------

MULTI = """
model Two(d = 4) {
  input x: float32[B, d]
  h = x |> linear(6) |> tanh
  output second = h |> linear(3)
  output first = h |> linear(5)
}
"""


def test_multiple_outputs_in_declared_order():
    spec = build(MULTI)
    assert list(spec.outputs) == ["second", "first"]
    model = spec.to_torch(seed=1).eval()
    x = randn(4, 4)
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == (4, 3) and out[1].shape == (4, 5)
    got = ort_run(spec, {"x": x.numpy()}, seed=1)
    proto = spec.to_onnx(seed=1)
    assert [o.name for o in proto.graph.output] == ["second", "first"]
    for g, w in zip(got, out):
        np.testing.assert_allclose(g, w.detach().numpy(), atol=1e-5, rtol=0)


def test_an_input_passed_straight_to_an_output():
    spec = build("model M() {\n input x: float32[B, 3]\n output y = x\n output z = x |> relu\n}")
    x = randn(2, 3)
    y, z = spec.to_torch()(x)
    assert torch.equal(y, x) and torch.equal(z, x.relu())
    oy, oz = ort_run(spec, {"x": x.numpy()})
    np.testing.assert_array_equal(oy, x.numpy())
    np.testing.assert_array_equal(oz, x.relu().numpy())


# --- sharing and independence -------------------------------------------------------------------


def test_named_layer_used_twice_shares_weights():
    spec = build("""
model Shared(d = 4) {
  input x: float32[B, d]
  input z: float32[B, d]
  fc = linear(d)
  output a = fc(x)
  output b = z |> fc
}""")
    assert spec.parameter_count == 4 * 4 + 4
    model = spec.to_torch(seed=2).eval()
    assert list(model.state_dict()) == ["fc.weight", "fc.bias"]
    x = randn(3, 4)
    a, b = model(x, x.clone())
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, torch.nn.functional.linear(x, model.fc.weight, model.fc.bias))
    oa, ob = ort_run(spec, {"x": x.numpy(), "z": x.numpy()}, seed=2)
    np.testing.assert_array_equal(oa, ob)
    # a shared layer in a chain: applied to its own output
    chain = build("model C(d = 4) {\n input x: float32[B, d]\n fc = linear(d)\n output y = x |> fc |> fc\n}")
    m = chain.to_torch(seed=0)
    assert chain.parameter_count == 20
    torch.testing.assert_close(m(x), m.fc(m.fc(x)))


BLOCKS = """
model Blocks(d = 4) {
  input x: float32[B, d]
  block Blk(x) {
    return x |> linear(d) |> tanh
  }
  %s
}
"""


def test_block_applied_twice_has_independent_weights():
    spec = build(BLOCKS % "output a = x |> Blk\n  output b = x |> Blk")
    assert spec.parameter_count == 2 * 20
    model = spec.to_torch(seed=0)
    assert list(model.state_dict()) == ["blk.linear.weight", "blk.linear.bias", "blk_1.linear.weight", "blk_1.linear.bias"]
    a, b = model(randn(3, 4))
    assert not torch.allclose(a, b)


def test_named_block_instance_shares_weights():
    spec = build(BLOCKS % "t = Blk\n  output a = x |> t\n  output b = x |> t\n  output c = x |> t |> t")
    assert spec.parameter_count == 20
    model = spec.to_torch(seed=0)
    assert list(model.state_dict()) == ["t.linear.weight", "t.linear.bias"]
    x = randn(3, 4)
    a, b, c = model(x)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    layer = model.t.linear
    torch.testing.assert_close(c, torch.tanh(layer(torch.tanh(layer(x)))))


def test_named_block_with_bound_argument():
    spec = build("""
model M(d = 4) {
  input x: float32[B, d]
  block Blk(x, k = 3) { return x |> linear(k) |> linear(d) }
  t = Blk(k = 5)
  output y = x |> t |> t
}""")
    assert spec.parameter_count == (4 * 5 + 5) + (5 * 4 + 4)
    model = spec.to_torch()
    assert model.t.linear.weight.shape == (5, 4)


def test_repeat_stacks_independent_copies():
    spec = build(BLOCKS % "stack = repeat(3, Blk)\n  output y = x |> stack")
    assert spec.parameter_count == 3 * 20
    model = spec.to_torch(seed=0)
    assert list(model.state_dict()) == [f"stack.{i}.linear.{w}" for i in range(3) for w in ("weight", "bias")]
    x = randn(2, 4)
    h = x
    for i in range(3):
        h = torch.tanh(model.stack[i].linear(h))
    torch.testing.assert_close(model(x), h)
    assert not torch.equal(model.stack[0].linear.weight, model.stack[1].linear.weight)


def test_anonymous_repeat_is_named_after_the_block():
    spec = build(BLOCKS % "output y = x |> repeat(2, Blk)")
    assert list(spec.to_torch().state_dict()) == [f"blk.{i}.linear.{w}" for i in range(2) for w in ("weight", "bias")]


def test_repeat_shared_applies_one_set_of_weights():
    spec = build(BLOCKS % "stack = repeat(3, Blk, shared)\n  output y = x |> stack")
    assert spec.parameter_count == 20
    model = spec.to_torch(seed=0)
    assert list(model.state_dict()) == ["stack.linear.weight", "stack.linear.bias"]
    x = randn(2, 4)
    layer = model.stack.linear
    torch.testing.assert_close(model(x), torch.tanh(layer(torch.tanh(layer(torch.tanh(layer(x)))))))


@pytest.mark.parametrize("shared", [False, True])
def test_repeat_matches_onnx(shared):
    spec = build(BLOCKS % f"stack = repeat(3, Blk{', shared' if shared else ''})\n  output y = x |> stack")
    model = spec.to_torch(seed=4)
    x = randn(5, 4)
    np.testing.assert_allclose(ort_run(spec, {"x": x.numpy()}, seed=4)[0], model(x).detach().numpy(), atol=1e-5)


TIED = """
model Tied(vocab = 10, d = 4) {
  input tokens: int64[B, T]
  wte = embedding(vocab, d)
  output logits = wte(tokens) |> linear(vocab, bias = false, weight = wte.weight)
}
"""


def test_tied_weights_are_one_parameter():
    spec = build(TIED)
    assert spec.parameter_count == 10 * 4  # the output projection adds nothing
    model = spec.to_torch(seed=0)
    assert [n for n, _ in model.named_parameters()] == ["wte.weight"]
    tokens = torch.tensor([[1, 2, 3], [4, 5, 9]])
    torch.testing.assert_close(model(tokens), model.wte(tokens) @ model.wte.weight.T)

    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    before = model.wte.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
        opt.step()
    assert not torch.equal(model.wte.weight, before)
    assert torch.equal(model.wte.weight, model.linear.weight)
    assert model.linear.weight is model.wte.weight

    got = ort_run(spec, {"tokens": tokens.numpy()}, weights=model.state_dict())[0]
    np.testing.assert_allclose(got, model(tokens).detach().numpy(), atol=1e-5)


def test_tied_weight_of_the_wrong_shape_is_an_error():
    with pytest.raises(FlashError, match="cannot tie `weight` to `wte.weight`"):
        build(TIED.replace("linear(vocab,", "linear(vocab + 1,"))


# --- imports --------------------------------------------------------------------------------------

LIB = """# a library of blocks
model Lib(d = 4) {
  input x: float32[B, d]
  block Dense(x) {
    return x |> linear(d) |> relu   # d comes from the importing model
  }
  block Squash(x) { return x |> tanh }
  output y = x |> Dense
}
"""


def test_from_import_block(tmp_path):
    (tmp_path / "lib.flash").write_text(LIB)
    main = tmp_path / "main.flash"
    main.write_text('from "lib.flash" import Dense\nmodel M(d = 6) {\n  input x: float32[B, d]\n'
                    '  output y = x |> Dense |> Dense\n}\n')
    spec = flashc.load(main)
    assert spec.parameter_count == 2 * (6 * 6 + 6)
    model = spec.to_torch(seed=0)
    x = randn(2, 6)
    torch.testing.assert_close(model(x), torch.relu(model.dense_1.linear(torch.relu(model.dense.linear(x)))))


def test_import_all_blocks(tmp_path):
    (tmp_path / "lib.flash").write_text(LIB)
    main = tmp_path / "main.flash"
    main.write_text('import "lib.flash"\nmodel M(d = 3) {\n  input x: float32[B, d]\n  output y = x |> Dense |> Squash\n}\n')
    spec = flashc.load(main)
    model = spec.to_torch(seed=0)
    x = randn(2, 3)
    torch.testing.assert_close(model(x), torch.tanh(torch.relu(model.dense.linear(x))))


def test_import_from_a_subdirectory_and_nested(tmp_path):
    """A nested import resolves relative to the file that contains it."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.flash").write_text(LIB)
    (tmp_path / "lib" / "more.flash").write_text(
        'from "base.flash" import Dense\nmodel More(d = 4) {\n  input x: float32[B, d]\n'
        '  output y = x |> Dense\n}\n')
    main = tmp_path / "main.flash"
    main.write_text('from "lib/more.flash" import Dense\nmodel M(d = 4) {\n  input x: float32[B, d]\n'
                    '  output y = x |> Dense |> Dense\n}\n')
    spec = flashc.load(main)
    assert spec.parameter_count == 2 * 20
    model = spec.to_torch(seed=0)
    x = randn(2, 4)
    torch.testing.assert_close(model(x), torch.relu(model.dense_1.linear(torch.relu(model.dense.linear(x)))))


def test_loads_resolves_imports_from_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "lib.flash").write_text(LIB)
    monkeypatch.chdir(tmp_path)
    spec = flashc.loads('from "lib.flash" import Squash\nmodel M() {\n input x: float32[B, 2]\n output y = x |> Squash\n}')
    x = randn(2, 2)
    torch.testing.assert_close(spec.to_torch()(x), torch.tanh(x))


def test_importing_a_missing_block_suggests_a_name(tmp_path):
    (tmp_path / "lib.flash").write_text(LIB)
    main = tmp_path / "main.flash"
    main.write_text('from "lib.flash" import Dens\nmodel M() {\n  input x: float32[B, 4]\n  output y = x |> Dens\n}\n')
    with pytest.raises(FlashError) as exc:
        flashc.load(main)
    message = str(exc.value)
    assert "has no block `Dens`" in message
    assert "did you mean `Dense`?" in message
    assert f"{main}:1:" in message


def test_importing_a_missing_file_is_an_error(tmp_path):
    main = tmp_path / "main.flash"
    main.write_text('import "nowhere.flash"\nmodel M() {\n  input x: float32[B, 4]\n  output y = x\n}\n')
    with pytest.raises(FlashError, match="cannot import nowhere.flash"):
        flashc.load(main)


def test_import_cycle_is_an_error(tmp_path):
    (tmp_path / "a.flash").write_text('import "b.flash"\n')
    (tmp_path / "b.flash").write_text('import "a.flash"\n')
    main = tmp_path / "main.flash"
    main.write_text('import "a.flash"\nmodel M() {\n  input x: float32[B, 4]\n  output y = x\n}\n')
    with pytest.raises(FlashError, match="import cycle"):
        flashc.load(main)


# --- comments ---------------------------------------------------------------------------------------

COMMENTED = """# leading comment
# another one
model M(   # after the parenthesis
  d = 4,   # a parameter
  k = 2    # the last parameter
) {        # after the brace
  # a comment line in the body
  input x: float32[B, d]   # after an input
  block Blk(x) {  # after a block header
    # inside a block
    return x |> linear(d)  # after return
  }  # after a block
  h = x      # start of a pipe
    |> Blk   # a stage
    # between stages
    |> relu
  output y = h |> linear(k)  # after an output
}  # after the model
# between model and train
train M {  # after the train header
  # inside train
  target label: int64[B]         # a target
  loss cross_entropy(y, label)   # the loss
  optimizer sgd(lr = 0.1)        # the optimizer
}
# a final comment without a newline"""

PLAIN = """model M(d = 4, k = 2) {
  input x: float32[B, d]
  block Blk(x) { return x |> linear(d) }
  output y = x |> Blk |> relu |> linear(k)
}
"""


def test_comments_anywhere():
    commented, plain = build(COMMENTED), build(PLAIN)
    assert commented.parameter_count == plain.parameter_count == 30
    assert list(commented.graph.weights) == list(plain.graph.weights)
    assert commented.train.optimizer.kwargs["lr"] == 0.1
    x = randn(3, 4)
    torch.testing.assert_close(commented.to_torch(seed=1)(x), plain.to_torch(seed=1)(x), atol=0, rtol=0)


# --- tensors: concat, shapes, attention, positions ---------------------------------------------------


def test_concat_of_two_branches():
    spec = build("""
model Branches(d = 4) {
  input x: float32[B, d]
  a = x |> linear(3) |> relu
  b = x |> linear(5) |> tanh
  output left = a
  output right = b
  output both = concat(a, b, axis = 1)
}""")
    assert spec.outputs["both"] == "float32[B, 8]"
    model = spec.to_torch(seed=0)
    x = randn(2, 4)
    left, right, both = model(x)
    torch.testing.assert_close(both, torch.cat([left, right], dim=1), atol=0, rtol=0)
    ort_both = ort_run(spec, {"x": x.numpy()})[2]
    np.testing.assert_allclose(ort_both, both.detach().numpy(), atol=1e-6)


def test_concat_with_mismatched_shapes_is_an_error():
    with pytest.raises(FlashError, match="concat along axis 1 needs matching tensors"):
        build("model M() {\n input x: float32[B, 4]\n input z: float32[B, 2, 3]\n output y = concat(x, z, axis = 1)\n}")


SHAPES = """
model Shapes() {
  input x: float32[B, 6, 4]
  output r = x |> reshape((B, 3, 8))
  output t = x |> transpose(1, 2)
  output f = x |> flatten
  output g = x |> flatten(start = 2)
  output p = x |> permute((2, 0, 1))
}
"""


def test_reshape_transpose_flatten_shapes():
    spec = build(SHAPES)
    assert spec.outputs == {"r": "float32[B, 3, 8]", "t": "float32[B, 4, 6]", "f": "float32[B, 24]",
                            "g": "float32[B, 6, 4]", "p": "float32[4, B, 6]"}
    graph_shapes = {n: tuple(str(d) for d in v.type.shape) for n, v in spec.graph.outputs}
    assert graph_shapes["r"] == ("B", "3", "8")
    x = randn(5, 6, 4)
    r, t, f, g, p = spec.to_torch()(x)
    torch.testing.assert_close(r, x.reshape(5, 3, 8))
    torch.testing.assert_close(t, x.transpose(1, 2))
    torch.testing.assert_close(f, x.reshape(5, 24))
    torch.testing.assert_close(g, x)
    torch.testing.assert_close(p, x.permute(2, 0, 1))
    for got, want in zip(ort_run(spec, {"x": x.numpy()}), (r, t, f, g, p)):
        np.testing.assert_array_equal(got, want.numpy())


def test_reshape_keeps_symbolic_dims_dynamic():
    spec = build("model M(h = 2) {\n input x: float32[B, T, 8]\n output y = x |> reshape((B, T, h, 8 // h))\n}")
    assert spec.outputs == {"y": "float32[B, T, 2, 4]"}
    for b, t in [(1, 3), (4, 7)]:
        x = randn(b, t, 8)
        assert spec.to_torch()(x).shape == (b, t, 2, 4)
        assert ort_run(spec, {"x": x.numpy()})[0].shape == (b, t, 2, 4)


def test_cross_attention_with_different_lengths():
    spec = build("""
model Cross() {
  input x: float32[B, T, 8]
  input mem: float32[B, S, 6]
  output y = attention(x, mem, heads = 2)
}""")
    assert spec.outputs == {"y": "float32[B, T, 8]"}
    assert spec.graph.weights["attention.k.weight"].spec.shape == (8, 6)
    model = spec.to_torch(seed=3).eval()

    ref = torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True).eval()
    with torch.no_grad():
        ref.q_proj_weight.copy_(model.attention.q.weight)
        ref.k_proj_weight.copy_(model.attention.k.weight)
        ref.v_proj_weight.copy_(model.attention.v.weight)
        ref.in_proj_bias.copy_(torch.cat([model.attention.q.bias, model.attention.k.bias, model.attention.v.bias]))
        ref.out_proj.weight.copy_(model.attention.out.weight)
        ref.out_proj.bias.copy_(model.attention.out.bias)

    for b, t, s in [(2, 3, 7), (1, 5, 2)]:
        x, mem = randn(b, t, 8, seed=t), randn(b, s, 6, seed=s)
        with torch.no_grad():
            got = model(x, mem)
            want, _ = ref(x, mem, mem, need_weights=False)
        assert got.shape == (b, t, 8)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(ort_run(spec, {"x": x.numpy(), "mem": mem.numpy()}, seed=3)[0], want.numpy(),
                                   atol=1e-5)


def test_causal_attention_does_not_see_the_future():
    spec = build("model M() {\n input x: float32[B, T, 8]\n output y = x |> attention(2, causal)\n}")
    model = spec.to_torch(seed=0).eval()
    x = randn(2, 6, 8)
    changed = x.clone()
    changed[:, 4:] += 1.0
    with torch.no_grad():
        a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    np.testing.assert_allclose(ort_run(spec, {"x": changed.numpy()})[0], b.numpy(), atol=1e-5)


def test_positions_embedding_follows_the_input_length():
    spec = build("""
model Pos(ctx = 16, d = 4) {
  input tokens: int64[B, T]
  pos = embedding(ctx, d)
  output table = pos(positions(T))
  output summed = (tokens |> embedding(ctx, d)) + pos(positions(T))
}""")
    assert spec.outputs == {"table": "float32[T, 4]", "summed": "float32[B, T, 4]"}
    model = spec.to_torch(seed=0)
    for t in (3, 9):
        tokens = torch.zeros(2, t, dtype=torch.long)
        table, summed = model(tokens)
        torch.testing.assert_close(table, model.pos.weight[:t], atol=0, rtol=0)
        torch.testing.assert_close(summed, (model.embedding.weight[0] + model.pos.weight[:t]).expand(2, t, 4))
        ort_table, ort_summed = ort_run(spec, {"tokens": tokens.numpy()})
        np.testing.assert_array_equal(ort_table, table.detach().numpy())
        np.testing.assert_allclose(ort_summed, summed.detach().numpy(), atol=1e-6)


def test_positions_with_a_fixed_length():
    spec = build("model M() {\n input x: float32[B, 5, 4]\n output y = x + embedding(5, 4)(positions(5))\n}")
    model = spec.to_torch(seed=0)
    x = randn(2, 5, 4)
    torch.testing.assert_close(model(x), x + model.embedding.weight)


# --- dropout ----------------------------------------------------------------------------------------

DROPOUT = "model Drop(p = 0.25) {\n input x: float32[B, N]\n output y = x |> dropout(p)\n}"


def test_dropout_is_inverted_in_training():
    model = build(DROPOUT).to_torch()
    model.train()
    torch.manual_seed(0)
    x = torch.ones(8, 2000)
    y = model(x)
    assert y.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    zeros = (y == 0).float().mean().item()
    assert 0.23 < zeros < 0.27
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))


def test_dropout_is_identity_in_eval_and_in_onnx():
    spec = build(DROPOUT, p=0.5)
    model = spec.to_torch().eval()
    x = randn(3, 7)
    assert torch.equal(model(x), x)
    proto = spec.to_onnx()
    assert not {"Dropout", "RandomUniform", "RandomUniformLike", "Bernoulli"} & {n.op_type for n in proto.graph.node}
    onnx.checker.check_model(proto, full_check=True)
    np.testing.assert_array_equal(ort_run(spec, {"x": x.numpy()})[0], x.numpy())


def test_dropout_p_out_of_range_is_an_error():
    with pytest.raises(FlashError, match=r"dropout p must be in \[0, 1\)"):
        build(DROPOUT, p=1.0)


# --- the train section -------------------------------------------------------------------------------

TRAIN_MODEL = """
model Net(d = 4) {
  input x: float32[B, d]
  h = x |> linear(d) |> relu
  output logits = h |> linear(3)
  output recon = h |> linear(d)
  output mu = h |> linear(2)
  output logvar = h |> linear(2)
  output emb = h |> linear(2)
}
"""


def train_of(body: str) -> object:
    return build(TRAIN_MODEL + "train Net {\n" + body + "\n}\n").train


def test_train_section_full():
    t = train_of("""
  target     label: int64[B]
  loss       cross_entropy(logits, label, label_smoothing = 0.1)
  optimizer  sgd(lr = 0.05, momentum = 0.9, nesterov = true)
  schedule   step(step_size = 10, gamma = 0.5)
  batch      full
  epochs     20
  early_stop monitor = val_loss, mode = "min", patience = 4, min_delta = 0.001, restore_best
  regularize l1(1e-5) on "*.weight"
  regularize l2(1e-4) on "linear.*", "linear_1.*"
  adversarial fgsm(epsilon = 0.03)
  clip_grad  1.0
  seed       7
""")
    assert [(n, str(ty)) for n, ty in t.targets] == [("label", "int64[B]")]
    assert (t.loss.kind, t.loss.name, t.loss.args) == ("call", "cross_entropy", ("logits", "label"))
    assert dict(t.loss.options)["label_smoothing"] == 0.1
    assert t.optimizer.name == "sgd"
    assert t.optimizer.kwargs == {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0}
    assert t.schedule.name == "step" and t.schedule.kwargs == {"step_size": 10, "gamma": 0.5}
    assert t.batch == "full"
    assert t.epochs == 20
    assert t.early_stop.kwargs == {"monitor": "val_loss", "mode": "min", "patience": 4, "min_delta": 0.001,
                                   "restore_best": True}
    l1, l2 = t.penalties
    assert (l1.kind, l1.strength, l1.patterns) == ("l1", 1e-5, ("*.weight",))
    assert set(l1.parameters) == {p for p in build(TRAIN_MODEL).graph.weights if p.endswith(".weight")}
    assert (l2.kind, l2.strength) == ("l2", 1e-4)
    assert set(l2.parameters) == {"linear.weight", "linear.bias", "linear_1.weight", "linear_1.bias"}
    assert t.adversarial.name == "fgsm" and t.adversarial.kwargs["epsilon"] == 0.03
    assert t.clip_grad == 1.0
    assert t.seed == 7


@pytest.mark.parametrize("batch, expected", [("full", "full"), ("1", 1), ("32", 32)])
def test_train_batch_modes(batch, expected):
    t = train_of(f"target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer sgd(lr = 0.1)\nbatch {batch}")
    assert t.batch == expected


def test_train_defaults():
    t = train_of("target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer adam")
    assert t.batch == 32 and t.epochs == 10 and t.schedule is None and t.early_stop is None
    assert t.penalties == () and t.adversarial is None and t.clip_grad is None
    assert t.optimizer.kwargs == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}


@pytest.mark.parametrize("text, name, options", [
    ("sgd(lr = 0.1, momentum = 0.9, nesterov = true)", "sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("sgd(lr = 0.1, nesterov)", "sgd", {"lr": 0.1, "nesterov": True}),
    ("adam(lr = 1e-3, betas = (0.9, 0.99))", "adam", {"lr": 1e-3, "betas": (0.9, 0.99)}),
    ("adamw(lr = 6e-4, weight_decay = 0.1)", "adamw", {"lr": 6e-4, "weight_decay": 0.1}),
    ("adamw", "adamw", {"weight_decay": 0.01}),
    ("rmsprop(lr = 0.01, alpha = 0.9, momentum = 0.5)", "rmsprop", {"alpha": 0.9, "momentum": 0.5}),
    ("adagrad(lr = 0.1)", "adagrad", {"lr": 0.1}),
])
def test_train_optimizers(text, name, options):
    t = train_of(f"target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer {text}")
    assert t.optimizer.name == name
    assert options.items() <= t.optimizer.kwargs.items()


@pytest.mark.parametrize("text, name, options", [
    ("step(step_size = 5, gamma = 0.5)", "step", {"step_size": 5, "gamma": 0.5}),
    ("exponential(gamma = 0.9)", "exponential", {"gamma": 0.9}),
    ("cosine", "cosine", {"t_max": None, "min_lr": 0.0}),
    ("cosine(t_max = 100, min_lr = 1e-5)", "cosine", {"t_max": 100, "min_lr": 1e-5}),
    ("warmup_cosine(warmup = 2000)", "warmup_cosine", {"warmup": 2000}),
    ("reduce_on_plateau(factor = 0.5, patience = 2)", "reduce_on_plateau", {"factor": 0.5, "patience": 2}),
])
def test_train_schedules(text, name, options):
    t = train_of(f"target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer sgd(lr = 0.1)\nschedule {text}")
    assert t.schedule.name == name
    assert options.items() <= t.schedule.kwargs.items()


def test_train_early_stop_max_mode():
    t = train_of('target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer sgd(lr = 0.1)\n'
                 'early_stop monitor = val_accuracy, mode = "max", patience = 2')
    assert t.early_stop.kwargs == {"monitor": "val_accuracy", "mode": "max", "patience": 2, "min_delta": 0.0,
                                   "restore_best": False}


def test_train_adversarial_pgd():
    t = train_of("target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer sgd(lr = 0.1)\n"
                 "adversarial pgd(epsilon = 0.1, steps = 3, alpha = 0.01)")
    assert t.adversarial.name == "pgd"
    assert t.adversarial.kwargs == {"epsilon": 0.1, "steps": 3, "alpha": 0.01, "share": 0.5}


TARGETS = "target label: int64[B]\ntarget onehot: float32[B, 3]\ntarget same: float32[B]\n"


@pytest.mark.parametrize("text, name, args, options", [
    ("cross_entropy(logits, label, label_smoothing = 0.1)", "cross_entropy", ("logits", "label"), {"label_smoothing": 0.1}),
    ("binary_cross_entropy(logits, onehot)", "binary_cross_entropy", ("logits", "onehot"), {}),
    ("kl_div(mu, logvar)", "kl_div", ("mu", "logvar"), {"form": "gaussian"}),
    ("mse(recon, x)", "mse", ("recon", "x"), {}),
    ("mae(recon, x)", "mae", ("recon", "x"), {}),
    ("huber(recon, x, delta = 0.5)", "huber", ("recon", "x"), {"delta": 0.5}),
    ("hinge(logits, label)", "hinge", ("logits", "label"), {"margin": 1.0}),
    ("contrastive(emb, mu, same, margin = 2.0)", "contrastive", ("emb", "mu", "same"), {"margin": 2.0}),
    ("dice(logits, onehot)", "dice", ("logits", "onehot"), {"smooth": 1.0}),
    ("perceptual(recon, x, network = vgg)", "perceptual", ("recon", "x"), {"network": "vgg"}),
])
def test_train_losses(text, name, args, options):
    t = train_of(f"{TARGETS}loss {text}\noptimizer adam")
    assert (t.loss.kind, t.loss.name, t.loss.args) == ("call", name, args)
    assert options.items() <= dict(t.loss.options).items()
    assert [n for n, _ in t.targets] == ["label", "onehot", "same"]


def test_train_custom_loss_expression():
    t = train_of(f"{TARGETS}loss mse(recon, x) + 0.5 * kl_div(mu, logvar)\noptimizer adam")
    loss = t.loss
    assert (loss.kind, loss.name) == ("binop", "+")
    left, right = loss.children
    assert (left.kind, left.name, left.args) == ("call", "mse", ("recon", "x"))
    assert (right.kind, right.name) == ("binop", "*")
    half, kl = right.children
    assert (half.kind, half.value) == ("number", 0.5)
    assert (kl.kind, kl.name, kl.args) == ("call", "kl_div", ("mu", "logvar"))


def test_train_loss_may_use_model_parameters():
    spec = build(TRAIN_MODEL.replace("d = 4", "d = 4, beta = 0.25")
                 + f"train Net {{\n{TARGETS}loss mse(recon, x) - beta * kl_div(mu, logvar) / 2\noptimizer adam\n}}")
    loss = spec.train.loss
    assert (loss.kind, loss.name) == ("binop", "-")
    div = loss.children[1]
    assert (div.kind, div.name) == ("binop", "/")
    assert div.children[0].children[0].value == 0.25


@pytest.mark.parametrize("body, message", [
    ("target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer adamm", "did you mean `adam"),
    ("target label: int64[B]\nloss cross_entropy(logit, label)\noptimizer adam", "did you mean `logits`"),
    ("target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer adam\nschedule cosin", "did you mean `cosine`"),
    ("target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer adam\nbatch 0", "`batch` must be a whole number"),
    ("target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer adam\nregularize l2(1e-4) on \"nothing.*\"",
     "matches no parameter"),
    ("target label: int64[B]\nloss cross_entropy(logits, label)", "no `optimizer`"),
    ("target label: int64[B]\nloss crossentropy(logits, label)\noptimizer adam", "did you mean `cross_entropy`"),
    ("target label: int64[B]\nloss cross_entropy(logits, label)\noptimizer adam\nepoch 3", "did you mean `epochs`"),
])
def test_train_section_errors(body, message):
    with pytest.raises(FlashError) as exc:
        train_of(body)
    assert message in str(exc.value)


def test_model_without_train_section():
    assert build(TRAIN_MODEL).train is None


# --- sequential: torchvision-style indexed names ------------------------------------------------


SEQUENTIAL = """
model Net(w = 4) {
  input x: float32[B, 3, 8, 8]
  block Basic(x, channels, stride = 1, downsample = identity) {
    conv1 = conv2d(channels, 3, stride = stride, padding = 1, bias = false)
    bn1 = batchnorm
    return ((x |> conv1 |> bn1) + (x |> downsample)) |> relu
  }
  layer1 = sequential(Basic(channels = 3), Basic(channels = 3))
  layer2 = sequential(Basic(channels = w, stride = 2, downsample = sequential(conv2d(w, 1, stride = 2, bias = false), batchnorm)), Basic(channels = w))
  output y = x |> layer1 |> layer2 |> sequential(flatten, linear(5), relu)
}
"""


def test_sequential_names_steps_by_index_and_agrees_with_onnx():
    spec = flashc.loads(SEQUENTIAL)
    keys = [k for k in spec.graph.weights if not k.endswith("num_batches_tracked")]
    assert "layer1.1.conv1.weight" in keys and "layer2.0.downsample.0.weight" in keys
    assert "layer2.0.downsample.1.running_var" in keys and "sequential.1.weight" in keys
    assert "layer1.0.downsample" not in " ".join(keys)  # the identity shortcut has no weights
    model = spec.to_torch(seed=2).eval()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(spec.to_onnx(seed=2).SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"x": x})[0], model(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_a_layer_passed_to_two_block_instances_is_not_shared():
    spec = flashc.loads(SEQUENTIAL)
    a, b = spec.graph.weights["layer2.0.downsample.0.weight"], spec.graph.weights["layer2.0.conv1.weight"]
    assert a.spec.shape == (4, 3, 1, 1) and b.spec.shape == (4, 3, 3, 3)


def test_sequential_rejects_non_layers():
    with pytest.raises(flashc.FlashError, match="sequential chains layers and blocks, got the number 3"):
        flashc.loads("model M { input x: float32[B, 4]\n output y = x |> sequential(relu, 3) }")
