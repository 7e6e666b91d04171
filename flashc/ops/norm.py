"""Normalisation: layernorm (per sample) and batchnorm (per batch, running stats)."""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param
from flashc.ops.shape import normalize_axis


class Layernorm(Op):
    """Normalize each sample over its last axis (the seed's layer normalization).

    `axis = 1` normalizes the channels of a [B, C, H, W] image at every pixel
    instead (ConvNeXt's LayerNorm2d), with weights of size C.
    """

    examples = (
        ("x |> layernorm(eps = 1e-6)", "over the last axis, as nn.LayerNorm"),
        ("img |> layernorm(eps = 1e-6, axis = 1)", "over the channels of an image: ConvNeXt's LayerNorm2d"),
    )

    name = "layernorm"
    aliases = ("layer_norm",)
    family = "norm"
    params = {"eps": Param(float, 1e-5), "bias": Param(bool, True),
              "axis": Param(int, -1, doc="the axis normalized; 1: the channels of a [B, C, H, W] image")}
    samples = ({"x": "float32[2, 5, 8]"}, {"x": "float32[3, 6]", "eps": 1e-6},
               {"x": "float32[2, 4, 3, 5]", "axis": 1, "eps": 1e-6}, {"x": "float32[2, 6, 7]", "axis": -2, "bias": False})

    def _axis(self, x: TensorType) -> int:
        return normalize_axis(self, self.axis, x.rank)

    def _features(self, x: TensorType) -> int:
        self.require(x.rank >= 1 and x.is_float, f"layernorm needs a float tensor, got {x}")
        axis = self._axis(x)
        self.require(is_static(x.shape[axis]), f"layernorm needs a fixed size on axis {self.axis}, got {x.shape_str()}")
        return int(x.shape[axis])

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

    def to_torch(self, c: Lowering) -> str:
        x, axis = c.inputs[0], self._axis(c.types[0])
        if axis == c.types[0].rank - 1:
            return f"{c.module}({x})"
        return f"{c.module}({x}.movedim({axis}, -1)).movedim(-1, {axis})"  # nn.LayerNorm reads the last axis

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, rank = c.inputs[0], c.types[0].rank
        axis = self._axis(c.types[0])
        last = [i for i in range(rank) if i != axis] + [axis]  # the normalized axis moved to the end
        if axis != rank - 1:
            x = tape.op("Transpose", [x], {"perm": last})
        ins = [x, c.weights["weight"]] + ([c.weights["bias"]] if self.bias else [])
        y = tape.op("LayerNormalization", ins, {"axis": -1, "epsilon": self.eps})
        if axis == rank - 1:
            return y
        return tape.op("Transpose", [y], {"perm": [last.index(i) for i in range(rank)]})


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
