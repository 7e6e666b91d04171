"""lstm_cell, gru_cell and rnn_cell against nn.LSTMCell / nn.GRUCell / nn.RNNCell.

The reference's state_dict is loaded as it is (same names, same layouts), then
one step is compared in PyTorch (<= 1e-5) and in onnxruntime, with given and
with absent (zero) states.
"""

from __future__ import annotations

import numpy as np
import pytest

import flashc
from flashc.diagnostics import FlashError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

FEATURES, HIDDEN = 5, 7
CASES = [
    # op, torch class, extra settings (flash, torch), states given
    ("lstm_cell", "LSTMCell", ("", {}), ("h", "c")),
    ("lstm_cell", "LSTMCell", ("", {}), ()),
    ("lstm_cell", "LSTMCell", (", bias = false", {"bias": False}), ("c",)),
    ("gru_cell", "GRUCell", ("", {}), ("h",)),
    ("gru_cell", "GRUCell", ("", {}), ()),
    ("gru_cell", "GRUCell", (", bias = false", {"bias": False}), ("h",)),
    ("rnn_cell", "RNNCell", ("", {}), ("h",)),
    ("rnn_cell", "RNNCell", (', nonlinearity = "relu"', {"nonlinearity": "relu"}), ()),
]


def cell_spec(op: str, extra: str, states: tuple[str, ...]):
    outs = ["h_next", "c_next"] if op == "lstm_cell" else ["h_next"]
    lines = [f"  input x: float32[B, {FEATURES}]"] + [f"  input {s}: float32[B, {HIDDEN}]" for s in states]
    args = "".join(f", {s} = {s}" for s in states)
    lines += [f"  cell = {op}({HIDDEN}{extra})", f"  {', '.join(outs)} = cell(x{args})"]
    lines += [f"  output {o}" for o in outs]
    return flashc.loads("model Step() {\n" + "\n".join(lines) + "\n}\n")


@pytest.mark.parametrize("op, cls, extra, states", CASES,
                         ids=[f"{c[0]}-{'+'.join(c[3]) or 'zero'}{c[2][0] and '-opts'}" for c in CASES])
def test_cell_matches_torch(op, cls, extra, states) -> None:
    torch.manual_seed(0)
    ref = getattr(torch.nn, cls)(FEATURES, HIDDEN, **extra[1]).eval()
    spec = cell_spec(op, extra[0], states)
    weights = {f"cell.{k}": v for k, v in ref.state_dict().items()}
    assert set(weights) == set(spec.graph.weights), "weight names differ from torch's"
    assert spec.parameter_count == sum(p.numel() for p in ref.parameters())
    module = spec.to_torch(weights=weights).eval()
    session = ort.InferenceSession(spec.to_onnx(weights=weights).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        feeds = {name: rng.standard_normal((batch, FEATURES if name == "x" else HIDDEN)).astype(np.float32)
                 for name in spec.inputs}
        t = {k: torch.from_numpy(v) for k, v in feeds.items()}
        zeros = torch.zeros(batch, HIDDEN)
        with torch.no_grad():
            if op == "lstm_cell":
                want = ref(t["x"], (t.get("h", zeros), t.get("c", zeros)))
            else:
                want = (ref(t["x"], t.get("h", zeros)),)
            got = module(*(t[n] for n in spec.inputs))
        got = got if isinstance(got, tuple) else (got,)
        got_onnx = session.run(list(spec.outputs), feeds)
        for w, g, o in zip(want, got, got_onnx):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=0, atol=1e-5, err_msg=f"{op} torch")
            np.testing.assert_allclose(o, w.numpy(), rtol=0, atol=1e-5, err_msg=f"{op} onnx")


def test_cell_source_and_errors() -> None:
    source = cell_spec("lstm_cell", "", ("h", "c")).torch_source()
    assert "self.cell = nn.LSTMCell(5, 7, bias=True)" in source
    assert "h_next, c_next = self.cell(x, (h, c))" in source
    with pytest.raises(FlashError, match=r"state `h` must be float32\[B, 7\] \(\[B, hidden\]\), got float32\[B, 6\]"):
        flashc.loads("model M() {\n  input x: float32[B, 5]\n  input h: float32[B, 6]\n"
                     "  output y = x |> gru_cell(7, h = h)\n}\n")
    with pytest.raises(FlashError, match=r"expects one float step \[B, features\]"):
        flashc.loads("model M() {\n  input x: float32[B, T, 5]\n  output y = x |> rnn_cell(7)\n}\n")


@pytest.mark.parametrize("op", ["lstm_cell", "gru_cell", "rnn_cell"])
def test_documented_examples_build(op: str) -> None:
    """Each example docs/language.md shows for a cell compiles to both backends."""
    from flashc.ops import REGISTRY

    for call, _ in REGISTRY[op].examples:
        outs = "a, b = " + call + "\n  output y = a" if op == "lstm_cell" else f"output y = {call}"
        spec = flashc.loads("model Example {\n  input x: float32[B, 64]\n  input h: float32[B, 128]\n"
                            f"  input c: float32[B, 128]\n  {outs}\n}}\n")
        assert spec.outputs["y"] == "float32[B, 128]", call
        assert spec.to_onnx() is not None and spec.to_torch() is not None, call
