"""scan: a block stepped along a sequence, with carried state, in PyTorch (a loop) and ONNX (Scan).

A scan of gru_cell / lstm_cell equals nn.GRU / nn.LSTM on the same weights; the
Bahdanau decoder (specs/bahdanau.flash) agrees between PyTorch and onnxruntime at
several sequence lengths; a state whose shape changes across a step is a clean
file:line:col error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import flashc
from flashc.diagnostics import FlashError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

SPECS = Path(__file__).resolve().parent.parent / "specs"
D, HID = 6, 7

GRU_SCAN = """
model GruScan(d = 6, hid = 7) {
  input xs: float32[B, T, d]
  input h0: float32[B, hid]

  block Step(x, h) {
    h = x |> gru_cell(hid, h = h)
    return h, h
  }

  ys, h_last = xs |> scan(Step, init = h0)
  output ys
  output h_last
}
"""

LSTM_SCAN = """
model LstmScan(d = 6, hid = 7) {
  input xs: float32[T, B, d]
  input h0: float32[B, hid]
  input c0: float32[B, hid]

  block Step(x, h, c) {
    h, c = x |> lstm_cell(hid, h = h, c = c)
    return h, h, c
  }

  ys, h_last, c_last = scan(Step, xs, init = (h0, c0), axis = 0)
  output ys
  output h_last
  output c_last
}
"""


def session(spec, weights, opset: int | None = None):
    return ort.InferenceSession(spec.to_onnx(weights=weights, opset=opset).SerializeToString(),
                                providers=["CPUExecutionProvider"])


def run_both(spec, weights, feeds: dict[str, np.ndarray], opset: int | None = None) -> tuple[list, list]:
    module = spec.to_torch(weights=weights).eval()
    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[n]) for n in spec.inputs))
    got = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    return got, session(spec, weights, opset).run(list(spec.outputs), feeds)


def test_scan_of_gru_cell_is_nn_gru() -> None:
    torch.manual_seed(0)
    ref = torch.nn.GRU(D, HID, batch_first=True).eval()
    spec = flashc.loads(GRU_SCAN)
    weights = {f"step.gru_cell.{k[:-3]}": v.numpy() for k, v in ref.state_dict().items()}  # weight_ih_l0 -> weight_ih
    assert set(weights) == set(spec.graph.weights), "one set of cell weights, shared by every step"
    rng = np.random.default_rng(0)
    for batch, steps in ((2, 5), (3, 11), (1, 1)):
        feeds = {"xs": rng.standard_normal((batch, steps, D)).astype(np.float32),
                 "h0": rng.standard_normal((batch, HID)).astype(np.float32)}
        with torch.no_grad():
            ys, h = ref(torch.from_numpy(feeds["xs"]), torch.from_numpy(feeds["h0"])[None])
        got, got_onnx = run_both(spec, weights, feeds)
        for out, want in zip(zip(got, got_onnx), (ys.numpy(), h[0].numpy())):
            np.testing.assert_allclose(out[0], want, rtol=0, atol=1e-5, err_msg=f"torch, T = {steps}")
            np.testing.assert_allclose(out[1], want, rtol=0, atol=1e-5, err_msg=f"onnx, T = {steps}")


@pytest.mark.parametrize("opset", [23, 17])
def test_scan_of_lstm_cell_is_nn_lstm(opset: int) -> None:
    """Two carried states (a tuple `init`), a time-major sequence (axis 0)."""
    torch.manual_seed(1)
    ref = torch.nn.LSTM(D, HID).eval()
    spec = flashc.loads(LSTM_SCAN)
    weights = {f"step.lstm_cell.{k[:-3]}": v.numpy() for k, v in ref.state_dict().items()}
    rng = np.random.default_rng(1)
    feeds = {"xs": rng.standard_normal((6, 2, D)).astype(np.float32),
             "h0": rng.standard_normal((2, HID)).astype(np.float32),
             "c0": rng.standard_normal((2, HID)).astype(np.float32)}
    with torch.no_grad():
        ys, (h, c) = ref(torch.from_numpy(feeds["xs"]), (torch.from_numpy(feeds["h0"])[None],
                                                         torch.from_numpy(feeds["c0"])[None]))
    got, got_onnx = run_both(spec, weights, feeds, opset)
    for t, o, want in zip(got, got_onnx, (ys.numpy(), h[0].numpy(), c[0].numpy())):
        np.testing.assert_allclose(t, want, rtol=0, atol=1e-5)
        np.testing.assert_allclose(o, want, rtol=0, atol=1e-5)


def test_scan_source_is_a_loop() -> None:
    source = flashc.loads(GRU_SCAN).torch_source()
    assert "ys, h_last = self.scan_step(xs, h0)" in source
    assert "def scan_step(self, xs, h):" in source
    assert "for x in xs.unbind(1):" in source
    assert "self.step.gru_cell(x, h)" in source
    model = flashc.loads(GRU_SCAN).to_onnx()
    assert [n.op_type for n in model.graph.node] == ["Scan"]
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_param == "T"  # the length stays symbolic


def test_bahdanau_decoder_torch_equals_onnxruntime() -> None:
    """An attention-fed decoder: attention over the encoder with the previous state, context fed back."""
    spec = flashc.load(SPECS / "bahdanau.flash")
    assert spec.outputs == {"logits": "float32[B, T, 40]"}
    step = [n for n in spec.graph.nodes if n.op.name == "scan"]
    assert len(step) == 1 and {n.op.name for n in step[0].bodies[0].nodes} >= {"gru_cell", "softmax", "concat"}
    weights = {k: v.numpy() for k, v in spec.to_torch(seed=3).state_dict().items()}
    rng = np.random.default_rng(2)
    for batch, src_len, tgt_len in ((2, 7, 5), (3, 4, 9)):
        feeds = {"src": rng.integers(0, 40, (batch, src_len)), "prev": rng.integers(0, 40, (batch, tgt_len))}
        got, got_onnx = run_both(spec, weights, feeds)
        assert got[0].shape == (batch, tgt_len, 40)
        np.testing.assert_allclose(got_onnx[0], got[0], rtol=0, atol=1e-5)


def test_bahdanau_step_reads_the_previous_state() -> None:
    """Changing the first target word changes every later step's logits, through the carried state."""
    spec = flashc.load(SPECS / "bahdanau.flash")
    module = spec.to_torch(seed=4).eval()
    src = torch.randint(0, 40, (1, 6), generator=torch.Generator().manual_seed(0))
    prev = torch.randint(0, 40, (1, 5), generator=torch.Generator().manual_seed(1))
    other = prev.clone()
    other[0, 0] = (prev[0, 0] + 1) % 40
    with torch.no_grad():
        a, b = module(src, prev), module(src, other)
    assert all(not torch.allclose(a[0, t], b[0, t]) for t in range(5))


def test_wrong_state_shape_is_a_clean_error() -> None:
    text = GRU_SCAN.replace("h = x |> gru_cell(hid, h = h)\n    return h, h",
                            "h2 = x |> gru_cell(hid, h = h)\n    return h2, h2 |> linear(3)")
    with pytest.raises(FlashError) as info:
        flashc.loads(text)
    message = str(info.value)
    assert "<string>:8:5: error: Step returns its state `h` as float32[B, 3], but it came in as float32[B, 7]" in message
    assert "keeps its shape and dtype from step to step" in message


@pytest.mark.parametrize("change, message", [
    ("xs |> scan(Step, init = h0, axis = 5)", r"scan axis 5 is out of range"),
    ("xs |> scan(Step, init = h0, steps = 3)", r"scan has no argument `steps`"),
    ("xs |> scan(Step, init = 3)", r"scan `init` is the initial state: a tensor or a tuple of tensors"),
    ("xs |> scan(Step, init = (h0, h0))", r"scan hands Step 1 step input\(s\) and 2 state\(s\)"),
    ("scan(Step, init = h0)", r"scan needs a sequence to step along"),
    ("xs |> scan(relu, init = h0)", r"scan needs one step block"),
])
def test_scan_errors(change: str, message: str) -> None:
    with pytest.raises(FlashError, match=message):
        flashc.loads(GRU_SCAN.replace("xs |> scan(Step, init = h0)", change))


TIED = """
model TiedDecoder(vocab = 12, d = 8) {
  input prev: int64[B, T]
  input h0: float32[B, d]

  emb = embedding(vocab, d)

  block Step(y, h) {
    h = y |> gru_cell(d, h = h)
    return h |> linear(vocab, bias = false, weight = emb.weight), h   # the output layer tied to the embedding
  }

  logits, h_last = prev |> emb |> scan(Step, init = h0)
  output logits
}

train TiedDecoder {
  target next: int64[B, T]
  loss cross_entropy(logits, next)
  optimizer adam(lr = 1e-2)
  batch 8
  epochs 2
}
"""


def test_a_step_can_tie_a_weight_and_train(tmp_path) -> None:
    spec = flashc.loads(TIED)
    assert "step.linear.weight" not in spec.graph.weights  # one tensor, under the embedding's name
    module = spec.to_torch(seed=0)
    assert module.step.linear.weight is module.emb.weight
    weights = {k: v.numpy() for k, v in module.state_dict().items() if k != "step.linear.weight"}
    rng = np.random.default_rng(5)
    feeds = {"prev": rng.integers(0, 12, (2, 6)), "h0": rng.standard_normal((2, 8)).astype(np.float32)}
    got, got_onnx = run_both(spec, weights, feeds)
    np.testing.assert_allclose(got_onnx[0], got[0], rtol=0, atol=1e-5)
    data = {"prev": rng.integers(0, 12, (32, 6)), "h0": np.zeros((32, 8), np.float32),
            "next": rng.integers(0, 12, (32, 6))}
    result = spec.fit(data, out=tmp_path / "run", quiet=True)
    assert not result.failed and all(np.isfinite(h["train_loss"]) for h in result.history)
