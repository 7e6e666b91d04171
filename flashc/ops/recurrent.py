"""Recurrent layers: LSTM and GRU over a batch-first sequence.

`y, h, c = x |> lstm(64, layers = 2, bidirectional)` and `y, h = x |> gru(64)`.
The weights have exactly nn.LSTM's / nn.GRU's names and layouts
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) so a torch state_dict loads as
is. Initial states are optional inputs shaped like torch's, ``[layers * dirs,
B, hidden]``; absent ones start at zero.

ONNX has LSTM and GRU ops too, with another gate order (LSTM: torch i f g o,
ONNX i o f c; GRU: torch r z n, ONNX z r h), a direction axis on the weights
and a time-major layout. The lowering emits one ONNX op per layer and builds
the reordered weights inside the graph from the torch-layout initializers
(a Gather of rows, Concat and Unsqueeze), so the ONNX file keeps the same
weight names as the checkpoint.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import MAX_COUNT, Input, Lowering, Op, Param

TORCH_LSTM = '''
class LSTMLayer(nn.LSTM):
    """nn.LSTM (batch first) returning (y, h_n, c_n); an absent initial state starts at zero."""

    def forward(self, x, h0=None, c0=None):
        if h0 is None and c0 is None:
            y, (h, c) = super().forward(x)
            return y, h, c
        zeros = x.new_zeros(self.num_layers * (2 if self.bidirectional else 1), x.shape[0], self.hidden_size)
        y, (h, c) = super().forward(x, (zeros if h0 is None else h0, zeros if c0 is None else c0))
        return y, h, c
'''


class Recurrent(Op):
    """Shared shape rule, weights and ONNX lowering of LSTM and GRU."""

    abstract = True
    family = "recurrent"
    params = {
        "hidden": Param(int, doc="size of the hidden state"),
        "layers": Param(int, 1, doc="stacked layers; each reads the previous one's outputs", maximum=MAX_COUNT),
        "bidirectional": Param(bool, False, doc="also run right to left; outputs are concatenated"),
        "bias": Param(bool, True),
    }
    gates: ClassVar[int] = 4
    # ONNX gate order as indices into torch's gate blocks
    onnx_gate_order: ClassVar[tuple[int, ...]] = ()
    onnx_op: ClassVar[str] = ""
    onnx_attrs: ClassVar[dict[str, Any]] = {}

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    def _features(self, x: TensorType) -> int:
        self.require(
            x.rank == 3 and x.is_float,
            f"`{self.name}` expects a float sequence [B, T, features] (batch first), got {x}",
        )
        self.require(is_static(x.shape[-1]), f"`{self.name}` needs a fixed feature size, got {x.shape_str()}")
        self.require(self.hidden >= 1, f"`{self.name}` needs hidden >= 1, got {self.hidden}")
        self.require(self.layers >= 1, f"`{self.name}` needs layers >= 1, got {self.layers}")
        return int(x.shape[-1])

    def _check_state(self, name: str, x: TensorType, state: TensorType | None) -> None:
        if state is None:
            return
        want = (self.layers * self.dirs, x.shape[0], self.hidden)
        self.require(
            state.dtype == x.dtype and state.shape == want,
            f"`{self.name}` initial state `{name}` must be {x.dtype}[{', '.join(str(d) for d in want)}] "
            f"([layers * directions, B, hidden]), got {state}",
        )

    def weights(self, x: TensorType, *states: TensorType | None) -> dict[str, WeightSpec]:
        """nn.LSTM / nn.GRU's parameters, in their order; uniform(+-1/sqrt(hidden)) as torch."""
        feats, rows = self._features(x), self.gates * self.hidden
        init = ("uniform", 1 / math.sqrt(self.hidden))
        w: dict[str, WeightSpec] = {}
        for layer in range(self.layers):
            fan_in = feats if layer == 0 else self.dirs * self.hidden
            for sfx in ("", "_reverse")[: self.dirs]:
                w[f"weight_ih_l{layer}{sfx}"] = WeightSpec((rows, fan_in), init)
                w[f"weight_hh_l{layer}{sfx}"] = WeightSpec((rows, self.hidden), init)
                if self.bias:
                    w[f"bias_ih_l{layer}{sfx}"] = WeightSpec((rows,), init)
                    w[f"bias_hh_l{layer}{sfx}"] = WeightSpec((rows,), init)
        return w

    def infer(self, x: TensorType, *states: TensorType | None) -> tuple[TensorType, ...]:
        self._features(x)
        for inp, state in zip(self.inputs[1:], states):
            self._check_state(inp.name, x, state)
        batch, steps = x.shape[0], x.shape[1]
        y = x.with_shape((batch, steps, self.dirs * self.hidden))
        state = x.with_shape((self.layers * self.dirs, batch, self.hidden))
        return (y,) + (state,) * (len(self.inputs) - 1)

    def _args(self, torch_name: str, feats: int) -> str:
        return (
            f"{torch_name}({feats}, {self.hidden}, num_layers={self.layers}, bias={self.bias}, "
            f"batch_first=True, bidirectional={self.bidirectional})"
        )

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        x, *states = c.inputs
        seq = tape.op("Transpose", [x], {"perm": [1, 0, 2]})  # [T, B, F]: ONNX's default layout
        order = tape.const(self._row_order(), "int64")
        finals: list[list[str]] = [[] for _ in states]
        for layer in range(self.layers):
            w, r, b = self._onnx_weights(tape, c.weights, order, layer)
            initial = [self._layer_state(tape, s, layer) for s in states]
            attrs = {"hidden_size": self.hidden, "direction": "bidirectional" if self.bidirectional else "forward"}
            y, *last = tape.op(self.onnx_op, [seq, w, r, b, None, *initial], {**attrs, **self.onnx_attrs},
                               outputs=1 + len(states))
            for acc, s in zip(finals, last):
                acc.append(s)  # [dirs, B, hidden]
            merged = tape.op("Transpose", [y], {"perm": [0, 2, 1, 3]})  # [T, dirs, B, H] -> [T, B, dirs, H]
            seq = tape.op("Reshape", [merged, tape.const([0, 0, -1], "int64")])
        out = tape.op("Transpose", [seq], {"perm": [1, 0, 2]})
        return [out] + [acc[0] if len(acc) == 1 else tape.op("Concat", acc, {"axis": 0}) for acc in finals]

    def _row_order(self) -> list[int]:
        """Weight rows in ONNX's gate order: torch's gate blocks, permuted."""
        h = self.hidden
        return [g * h + i for g in self.onnx_gate_order for i in range(h)]

    def _onnx_weights(self, tape: Any, w: dict[str, str], order: str, layer: int) -> tuple[str, str, str | None]:
        """W [dirs, G*H, in], R [dirs, G*H, H], B [dirs, 2*G*H] from the torch-layout weights."""

        def gates(name: str) -> str:
            return tape.op("Gather", [w[name], order], {"axis": 0})

        def stack(parts: list[str]) -> str:
            axis0 = tape.const([0], "int64")
            parts = [tape.op("Unsqueeze", [p, axis0]) for p in parts]
            return parts[0] if len(parts) == 1 else tape.op("Concat", parts, {"axis": 0})

        sfxs = [f"l{layer}{sfx}" for sfx in ("", "_reverse")[: self.dirs]]
        ws = stack([gates(f"weight_ih_{s}") for s in sfxs])
        rs = stack([gates(f"weight_hh_{s}") for s in sfxs])
        if not self.bias:
            return ws, rs, None
        bs = [tape.op("Concat", [gates(f"bias_ih_{s}"), gates(f"bias_hh_{s}")], {"axis": 0}) for s in sfxs]
        return ws, rs, stack(bs)

    def _layer_state(self, tape: Any, state: str | None, layer: int) -> str | None:
        """This layer's rows [dirs, B, H] of a [layers * dirs, B, H] initial state."""
        if state is None or self.layers == 1:
            return state
        start = layer * self.dirs
        return tape.op("Slice", [state, tape.const([start], "int64"), tape.const([start + self.dirs], "int64"),
                                 tape.const([0], "int64")])


class Lstm(Recurrent):
    """Long short-term memory; outputs (y [B, T, dirs*hidden], h_n, c_n), h_n/c_n [layers*dirs, B, hidden]."""

    inputs = (Input("x"), Input("h0", optional=True), Input("c0", optional=True))
    gates = 4
    onnx_gate_order = (0, 3, 1, 2)  # torch i f g o -> ONNX i o f c
    onnx_op = "LSTM"
    torch_prelude = (TORCH_LSTM,)
    samples = (
        {"x": "float32[2, 5, 3]", "hidden": 4},
        {"x": "float32[2, 5, 3]", "hidden": 4, "layers": 2, "bidirectional": True},
        {"x": "float32[2, 4, 3]", "hidden": 5, "layers": 3, "bias": False},
    )  # initial states: tests/test_ops_recurrent_tensor.py (their batch is axis 1, not 0)

    def torch_module(self, x: TensorType, *states: TensorType | None) -> str:
        return self._args("LSTMLayer", self._features(x))

    def to_torch(self, c: Lowering) -> str:
        x, h0, c0 = c.inputs
        args = [x] + ([f"h0={h0}"] if h0 else []) + ([f"c0={c0}"] if c0 else [])
        return f"{c.module}({', '.join(args)})"


class Gru(Recurrent):
    """Gated recurrent unit; outputs (y [B, T, dirs*hidden], h_n [layers*dirs, B, hidden])."""

    inputs = (Input("x"), Input("h0", optional=True))
    gates = 3
    onnx_gate_order = (1, 0, 2)  # torch r z n -> ONNX z r h
    onnx_op = "GRU"
    onnx_attrs = {"linear_before_reset": 1}  # torch applies the reset gate after the recurrent matmul
    samples = (
        {"x": "float32[2, 5, 3]", "hidden": 4},
        {"x": "float32[2, 5, 3]", "hidden": 4, "layers": 2, "bidirectional": True},
        {"x": "float32[2, 4, 3]", "hidden": 5, "layers": 3, "bias": False},
    )

    def torch_module(self, x: TensorType, *states: TensorType | None) -> str:
        return self._args("nn.GRU", self._features(x))

    def to_torch(self, c: Lowering) -> str:
        x, h0 = c.inputs
        return f"{c.module}({x}{', ' + h0 if h0 else ''})"
