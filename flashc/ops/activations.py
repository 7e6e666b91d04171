"""Activations: elementwise non-linearities (the seed's section 2) and softmax."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param

FLOAT_SAMPLE = ({"x": "float32[2, 3, 8]"}, {"x": "float32[5, 16]"})


class Activation(Op):
    """An elementwise float -> float function; its shape is its input's."""

    abstract = True
    family = "activation"
    samples = FLOAT_SAMPLE
    torch_expr: ClassVar[str] = ""
    onnx_op: ClassVar[str] = ""

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float, f"`{self.name}` needs a float tensor, got {x}")
        return x

    def onnx_attrs(self) -> dict[str, Any]:
        return {}

    def to_torch(self, c: Lowering) -> str:
        return self.torch_expr.format(x=c.inputs[0], **{k: repr(v) for k, v in self.attrs.items()})

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op(self.onnx_op, [c.inputs[0]], self.onnx_attrs())


class Relu(Activation):
    """max(0, x): cheap, but units can die (the seed's dying ReLU)."""

    torch_expr = "torch.relu({x})"
    onnx_op = "Relu"


class Sigmoid(Activation):
    """1 / (1 + e^-x), squashes into (0, 1)."""

    torch_expr = "torch.sigmoid({x})"
    onnx_op = "Sigmoid"


class Tanh(Activation):
    """Zero-centred squashing into (-1, 1)."""

    torch_expr = "torch.tanh({x})"
    onnx_op = "Tanh"


class Softplus(Activation):
    """log(1 + e^(beta x)) / beta, a smooth ReLU."""

    params = {"beta": Param(float, 1.0), "threshold": Param(float, 20.0)}
    torch_expr = "F.softplus({x}, beta={beta}, threshold={threshold})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x = c.inputs[0]
        beta = tape.const(self.beta, "float32")
        scaled = tape.op("Mul", [x, beta])
        soft = tape.op("Div", [tape.op("Softplus", [scaled]), beta])
        linear = tape.op("Greater", [scaled, tape.const(self.threshold, "float32")])  # torch's switch to x
        return tape.op("Where", [linear, x, soft])


class LeakyRelu(Activation):
    """x for x > 0, alpha * x otherwise: a small gradient keeps units alive."""

    params = {"alpha": Param(float, 0.01, doc="slope for x < 0")}
    torch_expr = "F.leaky_relu({x}, {alpha})"
    onnx_op = "LeakyRelu"

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Silu(Activation):
    """x * sigmoid(x), the self-gated SiLU / swish."""

    aliases = ("swish",)
    torch_expr = "F.silu({x})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Mul", [c.inputs[0], tape.op("Sigmoid", [c.inputs[0]])])


class Elu(Activation):
    """x for x > 0, alpha (e^x - 1) otherwise: pushes mean activations to zero."""

    params = {"alpha": Param(float, 1.0)}
    torch_expr = "F.elu({x}, {alpha})"
    onnx_op = "Elu"

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Selu(Activation):
    """Scaled ELU with the self-normalising constants."""

    torch_expr = "F.selu({x})"
    onnx_op = "Selu"


class Gelu(Activation):
    """x * Phi(x); `approximate = "tanh"` is GPT-2's variant."""

    params = {"approximate": Param(str, "none", choices=("none", "tanh"))}
    torch_expr = "F.gelu({x}, approximate={approximate})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x = c.inputs[0]
        if tape.opset >= 20:
            return tape.op("Gelu", [x], {"approximate": self.approximate})
        half = tape.const(0.5, "float32")
        one = tape.const(1.0, "float32")
        if self.approximate == "tanh":
            cube = tape.op("Mul", [tape.op("Mul", [x, x]), x])
            inner = tape.op("Add", [x, tape.op("Mul", [cube, tape.const(0.044715, "float32")])])
            t = tape.op("Tanh", [tape.op("Mul", [inner, tape.const(math.sqrt(2 / math.pi), "float32")])])
        else:
            t = tape.op("Erf", [tape.op("Mul", [x, tape.const(1 / math.sqrt(2), "float32")])])
        return tape.op("Mul", [tape.op("Mul", [x, half]), tape.op("Add", [t, one])])


class Mish(Activation):
    """x * tanh(softplus(x))."""

    torch_expr = "F.mish({x})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x = c.inputs[0]
        return tape.op("Mul", [x, tape.op("Tanh", [tape.op("Softplus", [x])])])


class HardSigmoid(Activation):
    """relu6(x + 3) / 6, a piecewise-linear sigmoid."""

    torch_expr = "F.hardsigmoid({x})"
    onnx_op = "HardSigmoid"

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": 1 / 6, "beta": 0.5}


class HardSwish(Activation):
    """x * hardsigmoid(x), MobileNetV3's cheap swish."""

    torch_expr = "F.hardswish({x})"
    onnx_op = "HardSwish"


class Softmax(Activation):
    """Scores to probabilities along `axis` (the output layer of a classifier)."""

    params = {"axis": Param(int, -1)}
    torch_expr = "torch.softmax({x}, dim={axis})"
    onnx_op = "Softmax"

    def infer(self, x: TensorType) -> TensorType:
        self.require(-x.rank <= self.axis < x.rank, f"softmax axis {self.axis} is out of range for {x}")
        return super().infer(x)

    def onnx_attrs(self) -> dict[str, Any]:
        return {"axis": self.axis}


class LogSoftmax(Softmax):
    """log(softmax(x)), computed stably."""

    torch_expr = "torch.log_softmax({x}, dim={axis})"
    onnx_op = "LogSoftmax"


class Identity(Activation):
    """Returns its input; handy as a placeholder in a pipeline."""

    torch_expr = "{x}"

    def infer(self, x: TensorType) -> TensorType:
        return x

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Identity", [c.inputs[0]])
