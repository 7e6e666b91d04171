"""The streaming ONNX writer: same model as the in-memory one, external data, atomic files."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file

import flashc
from flashc.backends.onnx import to_onnx_model, write_onnx

SPEC = """
model Net(d = 16) {
  input x: float32[B, T, d]
  h = x + (x |> layernorm |> attention(4, causal))
  output y = h |> linear(2 * d) |> gelu |> linear(3)
}
"""


def run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture
def spec():
    return flashc.loads(SPEC)


def test_streamed_file_equals_the_in_memory_model(spec, tmp_path):
    write_onnx(tmp_path / "m.onnx", spec.graph, seed=3)
    streamed = onnx.load(str(tmp_path / "m.onnx"))
    memory = to_onnx_model(spec.graph, seed=3)
    onnx.checker.check_model(streamed, full_check=True)
    assert {i.name for i in streamed.graph.initializer} == {i.name for i in memory.graph.initializer}
    for a in memory.graph.initializer:
        b = next(i for i in streamed.graph.initializer if i.name == a.name)
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))
    x = np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32)
    np.testing.assert_array_equal(run(tmp_path / "m.onnx", x), ort.InferenceSession(
        memory.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])


def test_external_data_round_trip(spec, tmp_path):
    data = write_onnx(tmp_path / "m.onnx", spec.graph, seed=1, external=True)
    assert data == tmp_path / "m.onnx.data" and data.stat().st_size == 4 * spec.parameter_count
    assert (tmp_path / "m.onnx").stat().st_size < 20_000  # the graph alone
    x = np.random.default_rng(1).standard_normal((3, 4, 16)).astype(np.float32)
    write_onnx(tmp_path / "inline.onnx", spec.graph, seed=1)
    np.testing.assert_allclose(run(tmp_path / "m.onnx", x), run(tmp_path / "inline.onnx", x), atol=0, rtol=0)


def test_weights_stream_from_safetensors(spec, tmp_path):
    weights = spec.init_weights(seed=9)
    save_file(weights, str(tmp_path / "w.safetensors"))
    write_onnx(tmp_path / "m.onnx", spec.graph, str(tmp_path / "w.safetensors"))
    model = onnx.load(str(tmp_path / "m.onnx"))
    for init in model.graph.initializer:
        if init.name in weights:
            np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), weights[init.name])


def test_misfit_weights_fail_before_writing(spec, tmp_path):
    weights = spec.init_weights()
    weights["linear.weight"] = np.zeros((1, 1), np.float32)
    save_file(weights, str(tmp_path / "w.safetensors"))
    with pytest.raises(flashc.FlashError, match=r"linear.weight` has shape \[1, 1\]"):
        write_onnx(tmp_path / "m.onnx", spec.graph, str(tmp_path / "w.safetensors"))
    assert list(tmp_path.iterdir()) == [tmp_path / "w.safetensors"]


def test_a_failure_while_streaming_leaves_no_file(spec, tmp_path, monkeypatch):
    import flashc.backends.onnx as backend

    def broken(*args, **kwargs):
        yield "attention.k.bias", np.zeros(16, np.float32)
        raise RuntimeError("disk full")

    monkeypatch.setattr(backend.WeightSource, "__iter__", broken)
    (tmp_path / "m.onnx").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        write_onnx(tmp_path / "m.onnx", spec.graph)
    assert (tmp_path / "m.onnx").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
