"""`--kv-cache`: a prompt then one token at a time through the cached graph equals the whole sequence at once.

Every causal decoder of specs/ (GPT-2, the character GPT, TinyLlama's GQA + RoPE, Mixtral's
experts) and a spec with every positional variant (interleaved partial RoPE, ALiBi with a
sliding window, T5's causal buckets) run in the generated PyTorch module and in onnxruntime at
opset 23 (`Attention` with past_key/past_value) and 17 (the decomposition). Attention that
cannot be cached is refused at its line.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import flashc
from flashc.diagnostics import FlashError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

ATOL = 2e-5  # float32 sums in another order (the cache splits the key axis)

VARIANTS = """
model Variants(vocab = 50, d = 32, heads = 4) {
  input tokens: int64[B, T]
  h = embedding(vocab, d)(tokens)
  h = h + attention(h, heads = heads, kv_heads = 2, rope = 500.0, rope_dim = 4, rope_style = "interleaved", causal)
  h = h + attention(h, heads = heads, alibi, causal, window = 3)
  h = h + attention(h, heads = heads, relative_buckets = 8, max_distance = 6, causal, scale = 1.0)
  output logits = h |> linear(vocab)
}
"""

DECODERS = {
    "gpt2": lambda: flashc.load("specs/gpt2.flash", depth=2, d=32, heads=4, vocab=50, ctx=16),
    "char_gpt": lambda: flashc.load("specs/char_gpt.flash"),
    "tinyllama": lambda: flashc.load("specs/tinyllama.flash", depth=2, d=32, heads=4, kv_heads=2, ff=48, vocab=50),
    "mixtral": lambda: flashc.load("specs/mixtral.flash", depth=2, d=32, heads=4, kv_heads=2, ff=48, vocab=50,
                                   experts=4, k=2),
    "variants": lambda: flashc.loads(VARIANTS),
}

SPLITS = (0, 4, 5, 6, 7, 8)  # a 4-token prompt (after an empty cache), then single tokens


def _tokens(spec: flashc.Spec) -> np.ndarray:
    vocab = min(w.spec.shape[0] for p, w in spec.graph.weights.items() if p.endswith("weight") and len(w.spec.shape) == 2)
    return np.random.default_rng(0).integers(0, min(vocab, 50), (2, SPLITS[-1]))


def _empty_cache(graph) -> dict[str, np.ndarray]:
    return {v.name: np.zeros((2, v.type.shape[1], 0, v.type.shape[3]), np.float32)
            for v in graph.inputs if v.name.startswith("past_key_values.")}


def _stepped(run, graph, tokens: np.ndarray) -> np.ndarray:
    """The first output over all tokens, fed as a prompt then token by token through ``run(feeds) -> outputs``."""
    n_out = len([name for name, _ in graph.outputs if not name.startswith("present.")])
    cache = _empty_cache(graph)
    pieces = []
    for start, end in zip(SPLITS, SPLITS[1:]):
        outs = run({"tokens": tokens[:, start:end], **cache})
        pieces.append(outs[0])
        cache = dict(zip(cache, outs[n_out:]))
        assert next(iter(cache.values())).shape[2] == end
    return np.concatenate(pieces, axis=1)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_cached_steps_equal_the_whole_sequence(name: str) -> None:
    spec = DECODERS[name]()
    tokens = _tokens(spec)
    weights = spec.init_weights(seed=1)
    module = spec.to_torch(weights=weights).eval()
    with torch.no_grad():
        out = module(torch.from_numpy(tokens))
        want = (out[0] if isinstance(out, tuple) else out).numpy()
    cached = spec.to_torch(weights=weights, kv_cache=True).eval()
    graph = spec.lowered_graph(kv_cache=True)

    def torch_run(feeds):
        with torch.no_grad():
            return [t.numpy() for t in cached(*(torch.from_numpy(feeds[v.name]) for v in graph.inputs))]

    got = {"torch": _stepped(torch_run, graph, tokens)}
    for opset in (23, 17):
        model = spec.to_onnx(weights=weights, opset=opset, kv_cache=True)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got[f"onnx opset {opset}"] = _stepped(lambda feeds, s=session: s.run(None, feeds), graph, tokens)
    for backend, value in got.items():
        np.testing.assert_allclose(value, want, rtol=0, atol=ATOL, err_msg=backend)


def test_cache_names_and_symbolic_shapes() -> None:
    spec = DECODERS["tinyllama"]()
    model = spec.to_onnx(kv_cache=True)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims["past_key_values.1.value"] == ["B", 2, "P", 8]
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert list(outs) == ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]
    assert outs["present.0.key"] == ["B", 2, "P + T", 8]


@pytest.mark.parametrize("source, message", [
    ("input x: float32[B, T, 8]\n  output y = x |> attention(2)", "not causal"),
    ("input x: float32[B, T, 8]\n  input m: float32[B, S, 8]\n  output y = attention(x, m, heads = 2, causal)",
     "cross-attention"),
    ("input x: float32[B, T, 8]\n  output y = x |> linear(8)", "no causal self-attention"),
])
def test_uncacheable_attention_is_refused_at_its_line(source: str, message: str) -> None:
    spec = flashc.loads(f"model M() {{\n  {source}\n}}\n", "m.flash")
    with pytest.raises(FlashError) as caught:
        spec.lowered_graph(kv_cache=True)
    assert message in str(caught.value.render())
    assert "m.flash:" in caught.value.render()


def test_compile_kv_cache_on_an_encoder_is_a_clean_error(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-m", "flashc.cli", "compile", "specs/text_classifier.flash", "--target",
                          "onnx", "--kv-cache", "-o", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert run.returncode == 1
    assert "error: --kv-cache caches causal self-attention" in run.stderr
    assert "Traceback" not in run.stderr
