"""`--kv-cache`: a prompt then one token at a time through the cached graph equals the whole sequence at once.

Every causal decoder of specs/ (GPT-2, the character GPT, TinyLlama's GQA + RoPE, Mixtral's
experts) and a spec with every positional variant (interleaved partial RoPE, ALiBi with a
sliding window, T5's causal buckets) run in the generated PyTorch module and in onnxruntime at
opset 23 (`Attention` with past_key/past_value) and 17 (the decomposition). Encoder-decoders
(T5, the translation spec) split into an encoder that also returns every cross-attention's keys
and values, computed once, and a cached decoder; together they equal the whole model. Attention
that cannot be cached is refused at its line.
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


ENCODER_DECODERS = {
    "t5_small": lambda: flashc.load("specs/t5_small.flash", vocab=60, d=32, d_kv=8, heads=4, ff=64, depth=2, buckets=8,
                                    max_distance=16),
    "translation": lambda: flashc.load("specs/translation.flash", vocab=60, ctx=16, d=32, heads=4, ff=64, depth=2),
}


def _seq2seq_feeds(spec: flashc.Spec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for v in spec.graph.inputs:
        shape = [2 if str(d) == "B" else 7 if str(d) == "S" else SPLITS[-1] for d in v.type.shape]
        feeds[v.name] = rng.integers(0, 50, shape) if v.type.dtype == "int64" else np.zeros(shape, bool)
        if v.type.dtype == "bool":
            feeds[v.name][0, -2:] = True  # padding at the end of the first source
    return feeds


def _seq2seq_stepped(encoder_run, decoder_run, encoder, decoder, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The decoder's logits: the encoder once, then the decoder fed its input as a prompt then token by token."""
    env = dict(zip((n for n, _ in encoder.outputs), encoder_run({v.name: feeds[v.name] for v in encoder.inputs})))
    env.update(feeds)
    start = decoder.inputs[0].name
    cache = _empty_cache(decoder)
    n_out = len([name for name, _ in decoder.outputs if not name.startswith("present.")])
    pieces = []
    for a, b in zip(SPLITS, SPLITS[1:]):
        step = {v.name: env[v.name][:, a:b] if v.name == start else cache.get(v.name, env.get(v.name))
                for v in decoder.inputs}
        outs = decoder_run(step)
        pieces.append(outs[0])
        cache = dict(zip(cache, outs[n_out:]))
    return np.concatenate(pieces, axis=1)


@pytest.mark.parametrize("name", sorted(ENCODER_DECODERS))
def test_encoder_decoder_cross_keys_once_and_a_cached_decoder(name: str) -> None:
    spec = ENCODER_DECODERS[name]()
    feeds = _seq2seq_feeds(spec)
    weights = spec.init_weights(seed=1)
    with torch.no_grad():
        want = spec.to_torch(weights=weights).eval()(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
    want = (want[-1] if isinstance(want, tuple) else want).numpy()  # logits: the last output
    encoder, decoder = spec.lowered_graphs(kv_cache=True)
    assert [n for n, _ in encoder.outputs if n.startswith("encoder_key_values.")] == [
        f"encoder_key_values.{i}.{p}" for i in range(2) for p in ("key", "value")]
    modules = [m.eval() for m in spec.to_torch(weights=weights, kv_cache=True)]

    def torch_run(module, graph):
        def run(f):
            with torch.no_grad():
                out = module(*(torch.from_numpy(np.asarray(f[v.name])) for v in graph.inputs))
            return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        return run

    got = {"torch": _seq2seq_stepped(torch_run(modules[0], encoder), torch_run(modules[1], decoder), encoder, decoder,
                                     feeds)}
    for opset in (23, 17):
        enc, dec = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                    for m in spec.to_onnx(weights=weights, opset=opset, kv_cache=True))
        got[f"onnx opset {opset}"] = _seq2seq_stepped(lambda f, s=enc: s.run(None, f), lambda f, s=dec: s.run(None, f),
                                                      encoder, decoder, feeds)
    for backend, value in got.items():
        np.testing.assert_allclose(value, want, rtol=0, atol=ATOL, err_msg=backend)


def test_compile_kv_cache_of_an_encoder_decoder_writes_two_files(tmp_path) -> None:
    out = tmp_path / "t5.onnx"
    run = subprocess.run([sys.executable, "-m", "flashc.cli", "compile", "specs/t5_small.flash", "--target", "onnx",
                          "--kv-cache", "-o", str(out), "--set", "depth=1", "--set", "d=32", "--set", "ff=32",
                          "--set", "vocab=50", "--set", "heads=2", "--set", "d_kv=8"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    names = {f.name for f in tmp_path.iterdir()}
    assert names == {"t5.onnx", "t5.encoder.onnx"}
    assert "t5.encoder.onnx" in run.stdout
