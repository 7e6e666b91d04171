"""moe(Expert, experts = n, k): equal to Hugging Face's MixtralSparseMoeBlock, sparse in both backends.

The reference is built from a small random config (nothing is downloaded); its
fused expert tensors are split into Mixtral's checkpoint names (`experts.N.w1`,
`w2`, `w3`), which are the names flashc gives the experts.
"""

from __future__ import annotations

import numpy as np
import pytest

import flashc
from flashc.diagnostics import FlashError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

D, FF, EXPERTS, K = 16, 24, 8, 2

SPEC = """
model MixtralMoe(d = 16, ff = 24, experts = 8, k = 2, router = "softmax_topk", normalize = true, dense = false) {
  input x: float32[B, T, d]

  block Expert(h) {                     # Mixtral's expert: w2(silu(w1 h) * w3 h)
    w1 = linear(ff, bias = false)
    w3 = linear(ff, bias = false)
    w2 = linear(d, bias = false)
    return (silu(w1(h)) * w3(h)) |> w2
  }

  block_sparse_moe = moe(Expert, experts = experts, k = k, router = router, normalize = normalize, dense = dense)
  output y = x |> block_sparse_moe
  output balance = moe_aux()
}
"""


def mixtral_block():
    transformers = pytest.importorskip("transformers")
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = transformers.MixtralConfig(hidden_size=D, intermediate_size=FF, num_local_experts=EXPERTS,
                                        num_experts_per_tok=K, hidden_act="silu")
    torch.manual_seed(0)
    block = MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    return block


def mixtral_weights(block, prefix: str = "block_sparse_moe") -> dict[str, np.ndarray]:
    """The reference's weights under Mixtral's checkpoint names (HF 5 fuses w1 and w3 as gate_up_proj)."""
    state = {k: v.detach().numpy() for k, v in block.state_dict().items()}
    out = {f"{prefix}.gate.weight": state["gate.weight"]}
    for e in range(EXPERTS):
        gate_up = state["experts.gate_up_proj"][e]
        out[f"{prefix}.experts.{e}.w1.weight"] = gate_up[:FF]
        out[f"{prefix}.experts.{e}.w3.weight"] = gate_up[FF:]
        out[f"{prefix}.experts.{e}.w2.weight"] = state["experts.down_proj"][e]
    return out


def run_both(spec, weights, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    module = spec.to_torch(weights=weights).eval()
    with torch.no_grad():
        got = [o.numpy() for o in module(torch.from_numpy(x))]
    session = ort.InferenceSession(spec.to_onnx(weights=weights).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return got, session.run(list(spec.outputs), {"x": x})


def test_moe_matches_mixtral() -> None:
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    ref = mixtral_block()
    spec = flashc.loads(SPEC)
    weights = mixtral_weights(ref)
    assert set(weights) == set(spec.graph.weights), "flashc's names are not Mixtral's checkpoint names"
    assert spec.parameter_count == sum(p.numel() for p in ref.parameters())
    rng = np.random.default_rng(0)
    for batch, steps in ((2, 5), (3, 7)):
        x = rng.standard_normal((batch, steps, D)).astype(np.float32)
        with torch.no_grad():
            want = ref(torch.from_numpy(x)).numpy()
            logits = ref.gate(torch.from_numpy(x))[0]
            want_aux = load_balancing_loss_func((logits,), EXPERTS, K).numpy()
        (y, aux), (y_onnx, aux_onnx) = run_both(spec, weights, x)
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-5, err_msg="torch")
        np.testing.assert_allclose(y_onnx, want, rtol=0, atol=1e-5, err_msg="onnxruntime")
        np.testing.assert_allclose(aux, want_aux, rtol=1e-5, err_msg="balance loss, torch")
        np.testing.assert_allclose(aux_onnx, want_aux, rtol=1e-5, err_msg="balance loss, onnxruntime")


def reference_routing(logits: np.ndarray, router: str, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(logits)
    if router == "topk_softmax":
        top, index = torch.topk(t, K, dim=-1)
        return torch.softmax(top, -1).numpy(), index.numpy()
    weights, index = torch.topk(torch.softmax(t, -1), K, dim=-1)
    if normalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return weights.numpy(), index.numpy()


@pytest.mark.parametrize("router, normalize", [("softmax_topk", True), ("softmax_topk", False),
                                               ("topk_softmax", True)])
def test_router_conventions(router: str, normalize: bool) -> None:
    """Both conventions, in both backends, against the routing written out in torch."""
    spec = flashc.loads(SPEC, router=router, normalize=normalize)
    module = spec.to_torch().eval()
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    x = np.random.default_rng(1).standard_normal((3, 4, D)).astype(np.float32)
    logits = x.reshape(-1, D) @ state["block_sparse_moe.gate.weight"].T
    weights, index = reference_routing(logits, router, normalize)
    want = np.zeros((12, D), np.float32)
    for e in range(EXPERTS):
        w1, w2, w3 = (state[f"block_sparse_moe.experts.{e}.{n}.weight"] for n in ("w1", "w2", "w3"))
        h = x.reshape(-1, D) @ w1.T
        y = ((h / (1 + np.exp(-h))) * (x.reshape(-1, D) @ w3.T)) @ w2.T
        want += y * (weights * (index == e)).sum(-1, keepdims=True)
    (y, _), (y_onnx, _) = run_both(spec, state, x)
    np.testing.assert_allclose(y.reshape(12, D), want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(y_onnx.reshape(12, D), want, rtol=0, atol=1e-5)


def expert_rows(spec, x: np.ndarray) -> int:
    """How many token rows the experts' first layers computed, counted by forward hooks."""
    module = spec.to_torch().eval()
    rows = []
    for e in range(EXPERTS):
        layer = module.block_sparse_moe.experts[e].w1
        layer.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    with torch.no_grad():
        module(torch.from_numpy(x))
    return sum(rows)


def test_each_token_runs_only_its_k_experts() -> None:
    x = np.random.default_rng(2).standard_normal((2, 9, D)).astype(np.float32)
    tokens = 2 * 9
    assert expert_rows(flashc.loads(SPEC), x) == K * tokens
    assert expert_rows(flashc.loads(SPEC, dense=True), x) == EXPERTS * tokens
    sparse = flashc.loads(SPEC)
    ops = {n.op_type for n in sparse.to_onnx().graph.node}
    assert {"TopK", "NonZero", "ScatterND"} <= ops
    dense = flashc.loads(SPEC, dense=True)
    weights = {k: v.numpy() for k, v in sparse.to_torch().state_dict().items()}
    (y, _), _ = run_both(sparse, weights, x)
    (y_dense, _), _ = run_both(dense, weights, x)
    np.testing.assert_allclose(y, y_dense, rtol=0, atol=1e-5)


def test_moe_source_reads_as_the_algorithm() -> None:
    source = flashc.loads(SPEC).torch_source()
    assert ", 2, 'softmax_topk', True)" in source and "MoE.route(" in source
    assert "MoE.dispatch(x, " in source and "MoE.combine(x, " in source
    assert "self.block_sparse_moe.experts[7].w2" in source


def test_balance_loss_trains(tmp_path) -> None:
    """A scalar output (the balance loss) is a term of the train section's loss, and training runs."""
    text = SPEC + """
train MixtralMoe {
  target want: float32[B, T, 16]
  loss mse(y, want) + 0.01 * balance
  optimizer adam(lr = 1e-2)
  batch 16
  epochs 2
}
"""
    spec = flashc.loads(text)
    loss = spec.graph.train.loss
    assert loss.kind == "binop" and loss.children[1].children[1].kind == "output"
    rng = np.random.default_rng(3)
    data = {"x": rng.standard_normal((64, 4, D)).astype(np.float32),
            "want": rng.standard_normal((64, 4, D)).astype(np.float32)}
    before = spec.to_torch().state_dict()["block_sparse_moe.gate.weight"].clone()
    result = spec.fit(data, out=tmp_path / "run", quiet=True)
    assert not result.failed and len(result.history) == 2
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    after = result.model.state_dict()["block_sparse_moe.gate.weight"]
    assert not torch.allclose(after.cpu(), before), "the router did not train"
    with pytest.raises(FlashError, match=r"the loss must be one number, but this is float32\[B, T, \d+\]"):
        flashc.loads(text.replace("0.01 * balance", "0.01 * y"))


@pytest.mark.parametrize("change, message", [
    ("moe(Expert, experts = 2, k = 3)", r"moe picks k = 3 of only 2 experts"),
    ("moe(Expert, k = 2)", r"moe needs `experts`"),
    ("moe(Expert, experts = 4, top = 2)", r"moe has no argument `top`"),
    ("moe(4, experts = 4)", r"moe needs an expert block, got the number 4"),
    ('moe(Expert, experts = 4, router = "topk")', r"`moe_route` router must be one of"),
])
def test_moe_errors(change: str, message: str) -> None:
    text = SPEC.replace("moe(Expert, experts = experts, k = k, router = router, normalize = normalize, dense = dense)",
                        change)
    with pytest.raises(FlashError, match=message) as info:
        flashc.loads(text)
    assert "<string>:" in str(info.value)


def test_moe_aux_needs_a_moe() -> None:
    with pytest.raises(FlashError, match=r"moe_aux\(\) needs a moe applied before it"):
        flashc.loads("model M() {\n  input x: float32[B, 4]\n  output y = x |> relu\n  output a = moe_aux()\n}\n")


LAYERS = """
model MiniMixtral(d = 16, ff = 24, depth = 2) {
  input x: float32[B, T, d]

  block Expert(h) {
    w1 = linear(ff, bias = false)
    w3 = linear(ff, bias = false)
    w2 = linear(d, bias = false)
    return (silu(w1(h)) * w3(h)) |> w2
  }

  block Layer(h) {
    h = h + (h |> rmsnorm |> moe(Expert, experts = 4, k = 2) as block_sparse_moe)
    return h
  }

  output y = x |> repeat(depth, Layer) as layers
  output balance = moe_aux()
}
"""


def test_moe_in_every_layer_has_mixtral_names_and_sums_the_balance_loss() -> None:
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    spec = flashc.loads(LAYERS)
    keys = set(spec.graph.weights)
    for layer in (0, 1):
        assert f"layers.{layer}.block_sparse_moe.gate.weight" in keys
        assert {f"layers.{layer}.block_sparse_moe.experts.{e}.{w}.weight" for e in range(4) for w in ("w1", "w2", "w3")} <= keys
    module = spec.to_torch(seed=1).eval()
    x = torch.randn(2, 5, D, generator=torch.Generator().manual_seed(0))
    logits = []
    for layer in module.layers:
        layer.block_sparse_moe.gate.register_forward_hook(lambda m, a, out: logits.append(out.reshape(-1, 4)))
    with torch.no_grad():
        _, balance = module(x)
    want = sum(load_balancing_loss_func((g,), 4, 2) for g in logits)  # Switch: one term per layer, summed
    assert len(logits) == 2 and abs(float(balance) - float(want)) < 1e-5
    weights = {k: v.numpy() for k, v in module.state_dict().items()}
    _, (_, balance_onnx) = run_both(spec, weights, x.numpy())
    assert abs(float(balance_onnx) - float(want)) < 1e-5


def test_a_named_moe_shares_its_weights() -> None:
    text = SPEC.replace("output y = x |> block_sparse_moe", "output y = x |> block_sparse_moe |> block_sparse_moe")
    spec = flashc.loads(text)
    assert len([k for k in spec.graph.weights if k.endswith("gate.weight")]) == 1
    assert spec.parameter_count == flashc.loads(SPEC).parameter_count


def test_mixtral_spec_matches_mixtral_for_causal_lm() -> None:
    """specs/mixtral.flash at a small size equals MixtralForCausalLM: attention, routing, experts, logits."""
    from pathlib import Path

    mod = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    config = mod.MixtralConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                               num_experts_per_tok=2, rms_norm_eps=1e-5, max_position_embeddings=64,
                               tie_word_embeddings=False, sliding_window=None,
                               rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    config._attn_implementation = "eager"
    torch.manual_seed(5)
    model = mod.MixtralForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    hf = {k.removeprefix("model."): v.numpy() for k, v in model.state_dict().items()}
    names = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "out"}
    weights: dict[str, np.ndarray] = {}
    for key, value in hf.items():
        if ".mlp.experts." in key:
            layer = key.split(".mlp.")[0]
            for e in range(4):
                prefix = f"{layer}.block_sparse_moe.experts.{e}"
                if key.endswith("gate_up_proj"):
                    weights[f"{prefix}.w1.weight"], weights[f"{prefix}.w3.weight"] = value[e][:48], value[e][48:]
                else:
                    weights[f"{prefix}.w2.weight"] = value[e]
            continue
        key = key.replace(".mlp.gate.", ".block_sparse_moe.gate.")
        for old, new in names.items():
            key = key.replace(f".{old}.", f".{new}.")
        weights[key] = value
    spec = flashc.load(Path(__file__).resolve().parent.parent / "specs" / "mixtral.flash", vocab=50, d=32, heads=4,
                       kv_heads=2, ff=48, experts=4, depth=2)
    assert set(weights) == set(spec.graph.weights)
    assert spec.parameter_count == sum(p.numel() for p in model.parameters())
    module = spec.to_torch(weights=weights).eval()
    session = ort.InferenceSession(spec.to_onnx(weights=weights).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(6)
    for batch, length in ((2, 6), (1, 11)):
        tokens = rng.integers(0, 50, (batch, length)).astype(np.int64)
        with torch.no_grad():
            want = model(input_ids=torch.from_numpy(tokens)).logits.numpy()
            got = module(torch.from_numpy(tokens))[0].numpy()
        got_onnx = session.run(["logits"], {"tokens": tokens})[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg="torch")  # logits of a few units
        np.testing.assert_allclose(got_onnx, want, rtol=0, atol=1e-5, err_msg="onnxruntime")
