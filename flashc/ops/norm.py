"""Normalisation: layernorm (per sample) and batchnorm (per batch, running stats)."""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param


class Layernorm(Op):
    """Normalize each sample over its last axis (the seed's layer normalization)."""

    name = "layernorm"
    aliases = ("layer_norm",)
    family = "norm"
    params = {"eps": Param(float, 1e-5), "bias": Param(bool, True)}
    samples = ({"x": "float32[2, 5, 8]"}, {"x": "float32[3, 6]", "eps": 1e-6})

    def _features(self, x: TensorType) -> int:
        self.require(x.rank >= 1 and x.is_float, f"layernorm needs a float tensor, got {x}")
        self.require(is_static(x.shape[-1]), f"layernorm needs a fixed last axis, got {x.shape_str()}")
        return int(x.shape[-1])

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        n = self._features(x)
        w = {"weight": WeightSpec((n,), ("ones",))}
        if self.bias:
            w["bias"] = WeightSpec((n,), ("zeros",))
        return w

    def infer(self, x: TensorType) -> TensorType:
        self._features(x)
        return x

    def torch_module(self, x: TensorType) -> str:
        return f"nn.LayerNorm({self._features(x)}, eps={self.eps!r}, bias={self.bias})"


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        ins = [c.inputs[0], c.weights["weight"]] + ([c.weights["bias"]] if self.bias else [])
        return tape.op("LayerNormalization", ins, {"axis": -1, "epsilon": self.eps})


class Batchnorm(Op):
    """Normalize each channel over the batch; running statistics for inference."""

    name = "batchnorm"
    aliases = ("batch_norm",)
    family = "norm"
    params = {"eps": Param(float, 1e-5), "momentum": Param(float, 0.1)}
    samples = ({"x": "float32[4, 3, 5, 5]"}, {"x": "float32[6, 8]"}, {"x": "float32[2, 4, 7]"})

    def _channels(self, x: TensorType) -> int:
        self.require(
            2 <= x.rank <= 5 and x.is_float,
            f"batchnorm expects a float [B, C, ...] tensor of rank 2 to 5, got {x}",
        )
        self.require(is_static(x.shape[1]), f"batchnorm needs a fixed channel axis, got {x.shape_str()}")
        return int(x.shape[1])

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        c = self._channels(x)
        return {
            "weight": WeightSpec((c,), ("ones",)),
            "bias": WeightSpec((c,), ("zeros",)),
            "running_mean": WeightSpec((c,), ("zeros",), buffer=True),
            "running_var": WeightSpec((c,), ("ones",), buffer=True),
            "num_batches_tracked": WeightSpec((), ("zeros",), buffer=True, dtype="int64"),
        }

    def infer(self, x: TensorType) -> TensorType:
        self._channels(x)
        return x

    def torch_module(self, x: TensorType) -> str:
        kind = {2: "1d", 3: "1d", 4: "2d", 5: "3d"}[x.rank]
        return f"nn.BatchNorm{kind}({self._channels(x)}, eps={self.eps!r}, momentum={self.momentum!r})"


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        w = c.weights
        ins = [c.inputs[0], w["weight"], w["bias"], w["running_mean"], w["running_var"]]
        return tape.op("BatchNormalization", ins, {"epsilon": self.eps, "momentum": 1 - self.momentum})


class Dropout(Op):
    """Inverted dropout: zero a share `p` and scale by 1/(1-p) in training; identity at inference."""

    family = "regularize"
    params = {"p": Param(float, 0.5, doc="probability of zeroing a unit")}
    samples = ({"x": "float32[2, 8]", "p": 0.3},)

    def infer(self, x: TensorType) -> TensorType:
        self.require(0.0 <= self.p < 1.0, f"dropout p must be in [0, 1), got {self.p}")
        return x

    def torch_module(self, x: TensorType) -> str:
        return f"nn.Dropout({self.p!r})"


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return c.inputs[0]
