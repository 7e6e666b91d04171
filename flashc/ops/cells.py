"""Recurrent cells: one time step of an LSTM, a GRU or an Elman RNN.

`h, c = x |> lstm_cell(64, h = h, c = c)`, `h = x |> gru_cell(64, h = h)`,
`h = x |> rnn_cell(64, h = h, nonlinearity = "relu")`. A cell maps one step's
input ``x [B, features]`` and the previous state ``[B, hidden]`` to the next
state; absent states start at zero. They are the bodies a `scan` steps along a
sequence (an attention-fed decoder feeds the context back into ``gru_cell``).

The weights have exactly nn.LSTMCell's / nn.GRUCell's / nn.RNNCell's names and
layouts (``weight_ih`` [gates * hidden, features], ``weight_hh``, ``bias_ih``,
``bias_hh``, torch's gate order) so a torch state_dict loads as it is. PyTorch
lowers to those modules; ONNX lowers to the gate equations written out with
Gemm, Split and the activations, reading the same initializers (no reordering).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.linalg import onnx_linear


class Cell(Op):
    """Shared schema, checks, weights and ONNX gate pre-activations of the three cells."""

    abstract = True
    family = "recurrent"
    params = {
        "hidden": Param(int, doc="size of the hidden state", minimum=1),
        "bias": Param(bool, True),
    }
    gates: ClassVar[int] = 1
    torch_class: ClassVar[str] = ""

    def _features(self, x: TensorType) -> int:
        self.require(x.rank == 2 and x.is_float,
                     f"`{self.name}` expects one float step [B, features], got {x}",
                     "a cell takes one time step; `scan` applies it along a sequence")
        self.require(is_static(x.shape[-1]), f"`{self.name}` needs a fixed feature size, got {x.shape_str()}")
        return int(x.shape[-1])

    def _check_states(self, x: TensorType, states: tuple[TensorType | None, ...]) -> None:
        for inp, state in zip(self.inputs[1:], states):
            if state is None:
                continue
            want = x.with_shape((x.shape[0], self.hidden))
            self.require(state == want,
                         f"`{self.name}` state `{inp.name}` must be {want} ([B, hidden]), got {state}")

    def weights(self, x: TensorType, *states: TensorType | None) -> dict[str, WeightSpec]:
        """nn.*Cell's parameters in their order; uniform(+-1/sqrt(hidden)) as torch initialises them."""
        rows, init = self.gates * self.hidden, ("uniform", 1 / math.sqrt(self.hidden))
        w = {"weight_ih": WeightSpec((rows, self._features(x)), init),
             "weight_hh": WeightSpec((rows, self.hidden), init)}
        if self.bias:
            w["bias_ih"] = WeightSpec((rows,), init)
            w["bias_hh"] = WeightSpec((rows,), init)
        return w

    def infer(self, x: TensorType, *states: TensorType | None) -> TensorType | tuple[TensorType, ...]:
        self._features(x)
        self._check_states(x, states)
        out = x.with_shape((x.shape[0], self.hidden))
        return out if len(self.inputs) == 2 else (out,) * (len(self.inputs) - 1)

    def torch_module(self, x: TensorType, *states: TensorType | None) -> str:
        return f"{self.torch_class}({self._features(x)}, {self.hidden}, bias={self.bias}{self._torch_extra()})"

    def _torch_extra(self) -> str:
        return ""

    # --- ONNX: the gate pre-activations --------------------------------------------------
    def _input_part(self, tape: Any, x: str, w: dict[str, str]) -> str:
        """x W_ih^T + b_ih: [B, gates * hidden]."""
        return onnx_linear(tape, x, w["weight_ih"], w.get("bias_ih"), 2)

    def _hidden_part(self, tape: Any, h: str | None, w: dict[str, str]) -> str | None:
        """h W_hh^T + b_hh; with a zero state that is b_hh alone (None without bias)."""
        if h is not None:
            return onnx_linear(tape, h, w["weight_hh"], w.get("bias_hh"), 2)
        return w.get("bias_hh")

    def _split(self, tape: Any, v: str) -> list[str]:
        """The gate blocks of [B, gates * hidden] along the last axis, in torch's order."""
        sizes = tape.const([self.hidden] * self.gates, "int64")
        return tape.op("Split", [v, sizes], {"axis": 1}, outputs=self.gates)


class LstmCell(Cell):
    """One LSTM step: (h, c) from x [B, features] and the previous (h, c) [B, hidden]; as nn.LSTMCell."""

    inputs = (Input("x"), Input("h", optional=True), Input("c", optional=True))
    gates = 4
    torch_class = "nn.LSTMCell"
    examples = (
        ("x |> lstm_cell(128, h = h, c = c)", "the next (h, c); unpack: `h, c = ...`"),
        ("x |> lstm_cell(128)", "the first step: h and c start at zero"),
    )
    samples = (
        {"x": "float32[2, 3]", "h": "float32[2, 4]", "c": "float32[2, 4]", "hidden": 4},
        {"x": "float32[3, 5]", "hidden": 6},
        {"x": "float32[2, 3]", "c": "float32[2, 5]", "hidden": 5, "bias": False},
    )

    def to_torch(self, c: Lowering) -> str:
        x, h, cell = c.inputs
        if h is None and cell is None:
            return f"{c.module}({x})"
        h = h or f"torch.zeros_like({cell})"
        cell = cell or f"torch.zeros_like({h})"
        return f"{c.module}({x}, ({h}, {cell}))"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        x, h, cell = c.inputs
        pre = self._input_part(tape, x, c.weights)
        hidden = self._hidden_part(tape, h, c.weights)
        if hidden is not None:
            pre = tape.op("Add", [pre, hidden])
        i, f, g, o = self._split(tape, pre)  # torch's order: input, forget, cell, output
        new_c = tape.op("Mul", [tape.op("Sigmoid", [i]), tape.op("Tanh", [g])])
        if cell is not None:
            new_c = tape.op("Add", [tape.op("Mul", [tape.op("Sigmoid", [f]), cell]), new_c])
        new_h = tape.op("Mul", [tape.op("Sigmoid", [o]), tape.op("Tanh", [new_c])])
        return [new_h, new_c]


class GruCell(Cell):
    """One GRU step: h from x [B, features] and the previous h [B, hidden]; as nn.GRUCell."""

    inputs = (Input("x"), Input("h", optional=True))
    gates = 3
    torch_class = "nn.GRUCell"
    examples = (
        ("x |> gru_cell(128, h = h)", "the next h; inside `scan`, the step of a GRU"),
        ("concat(x, h) |> gru_cell(128, h = h)", "an input built at each step (an attention context)"),
    )
    samples = (
        {"x": "float32[2, 3]", "h": "float32[2, 4]", "hidden": 4},
        {"x": "float32[3, 5]", "hidden": 6},
        {"x": "float32[2, 3]", "h": "float32[2, 5]", "hidden": 5, "bias": False},
    )

    def to_torch(self, c: Lowering) -> str:
        x, h = c.inputs
        return f"{c.module}({x}{', ' + h if h else ''})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, h = c.inputs
        xr, xz, xn = self._split(tape, self._input_part(tape, x, c.weights))  # torch's order: reset, update, new
        hidden = self._hidden_part(tape, h, c.weights)
        if hidden is None:  # zero state, no bias: the recurrent part vanishes
            r, z, n = tape.op("Sigmoid", [xr]), tape.op("Sigmoid", [xz]), tape.op("Tanh", [xn])
        else:
            hr, hz, hn = self._split(tape, hidden) if h is not None else self._split_bias(tape, hidden)
            r = tape.op("Sigmoid", [tape.op("Add", [xr, hr])])
            z = tape.op("Sigmoid", [tape.op("Add", [xz, hz])])
            n = tape.op("Tanh", [tape.op("Add", [xn, tape.op("Mul", [r, hn])])])
        # h' = (1 - z) * n + z * h = n - z * n + z * h
        new_h = tape.op("Sub", [n, tape.op("Mul", [z, n])])
        if h is not None:
            new_h = tape.op("Add", [new_h, tape.op("Mul", [z, h])])
        return new_h

    def _split_bias(self, tape: Any, bias: str) -> list[str]:
        """The three gate blocks of the 1-d b_hh (the recurrent part of a zero state)."""
        sizes = tape.const([self.hidden] * self.gates, "int64")
        return tape.op("Split", [bias, sizes], {"axis": 0}, outputs=self.gates)


class RnnCell(Cell):
    """One Elman RNN step: h = act(x W_ih^T + b_ih + h W_hh^T + b_hh); as nn.RNNCell."""

    inputs = (Input("x"), Input("h", optional=True))
    params = {**Cell.params, "nonlinearity": Param(str, "tanh", choices=("tanh", "relu"))}
    gates = 1
    torch_class = "nn.RNNCell"
    examples = (("x |> rnn_cell(128, h = h, nonlinearity = \"relu\")", "h' = relu(W_ih x + b_ih + W_hh h + b_hh)"),)
    samples = (
        {"x": "float32[2, 3]", "h": "float32[2, 4]", "hidden": 4},
        {"x": "float32[3, 5]", "hidden": 6, "nonlinearity": "relu"},
        {"x": "float32[2, 3]", "h": "float32[2, 5]", "hidden": 5, "bias": False, "nonlinearity": "relu"},
    )

    def _torch_extra(self) -> str:
        return f", nonlinearity={self.nonlinearity!r}"

    def to_torch(self, c: Lowering) -> str:
        x, h = c.inputs
        return f"{c.module}({x}{', ' + h if h else ''})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, h = c.inputs
        pre = self._input_part(tape, x, c.weights)
        hidden = self._hidden_part(tape, h, c.weights)
        if hidden is not None:
            pre = tape.op("Add", [pre, hidden])
        return tape.op("Tanh" if self.nonlinearity == "tanh" else "Relu", [pre])
