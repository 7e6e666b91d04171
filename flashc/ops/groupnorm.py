"""More normalisation: groupnorm, rmsnorm, and batchnorm1d/2d, which check their input's rank."""

from __future__ import annotations

from typing import Any, ClassVar

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param
from flashc.ops.norm import Batchnorm


def reduce_mean_last(tape: Any, x: str) -> str:
    """The mean over the last axis, kept as size 1 (ReduceMean's axes became an input in opset 18)."""
    if tape.opset < 18:
        return tape.op("ReduceMean", [x], {"axes": [-1], "keepdims": 1})
    return tape.op("ReduceMean", [x, tape.const([-1], "int64")], {"keepdims": 1})


class Groupnorm(Op):
    """Normalize each sample over groups of channels; independent of the batch size (small batches, detection)."""

    name = "groupnorm"
    aliases = ("group_norm",)
    family = "norm"
    params = {"groups": Param(int, doc="number of channel groups; divides the channels"), "eps": Param(float, 1e-5)}
    samples = (
        {"x": "float32[2, 6, 4, 5]", "groups": 3},
        {"x": "float32[3, 8, 7]", "groups": 2, "eps": 1e-3},
        {"x": "float32[2, 6]", "groups": 2},
    )

    def _channels(self, x: TensorType) -> int:
        self.require(x.rank >= 2 and x.is_float, f"groupnorm expects a float [B, C, ...] tensor, got {x}")
        c = x.shape[1]
        self.require(is_static(c), f"groupnorm needs a fixed channel axis, got {x.shape_str()}")
        self.require(
            self.groups >= 1 and c % self.groups == 0,
            f"groupnorm groups={self.groups} must divide the {c} channels of {x.shape_str()}",
            f"pick groups among the divisors of {c}",
        )
        return int(c)

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        c = self._channels(x)
        return {"weight": WeightSpec((c,), ("ones",)), "bias": WeightSpec((c,), ("zeros",))}

    def infer(self, x: TensorType) -> TensorType:
        self._channels(x)
        return x

    def torch_module(self, x: TensorType) -> str:
        return f"nn.GroupNorm({self.groups}, {self._channels(x)}, eps={self.eps!r})"


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, w, b = c.inputs[0], c.weights["weight"], c.weights["bias"]
        if tape.opset >= 21:  # per-channel scale and bias (opset 18's were per group)
            return tape.op("GroupNormalization", [x, w, b], {"epsilon": self.eps, "num_groups": self.groups})
        t = c.types[0]
        g, dtype = self.groups, t.dtype
        grouped = tape.op("Reshape", [x, tape.const([0, g, -1], "int64")])  # [B, G, C/G * spatial]
        ones, zeros = tape.const([1.0] * g, dtype), tape.const([0.0] * g, dtype)
        normed = tape.op("InstanceNormalization", [grouped, ones, zeros], {"epsilon": self.eps})
        y = tape.op("Reshape", [normed, tape.op("Shape", [x])])
        per_channel = tape.const([int(t.shape[1])] + [1] * (t.rank - 2), "int64")
        y = tape.op("Mul", [y, tape.op("Reshape", [w, per_channel])])
        return tape.op("Add", [y, tape.op("Reshape", [b, per_channel])])


class Rmsnorm(Op):
    """Scale each vector of the last axis to unit root mean square; no centring, no bias (LLaMA, T5)."""

    name = "rmsnorm"
    aliases = ("rms_norm",)
    family = "norm"
    params = {"eps": Param(float, 1e-6, doc="added to the mean square")}
    samples = ({"x": "float32[2, 5, 8]"}, {"x": "float32[3, 6]", "eps": 1e-5})

    def _features(self, x: TensorType) -> int:
        self.require(x.rank >= 1 and x.is_float, f"rmsnorm needs a float tensor, got {x}")
        self.require(is_static(x.shape[-1]), f"rmsnorm needs a fixed last axis, got {x.shape_str()}")
        return int(x.shape[-1])

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        return {"weight": WeightSpec((self._features(x),), ("ones",))}

    def infer(self, x: TensorType) -> TensorType:
        self._features(x)
        return x

    def torch_module(self, x: TensorType) -> str:
        return f"nn.RMSNorm({self._features(x)}, eps={self.eps!r})"


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, w = c.inputs[0], c.weights["weight"]
        if tape.opset >= 23:
            return tape.op("RMSNormalization", [x, w], {"axis": -1, "epsilon": self.eps})
        mean_square = reduce_mean_last(tape, tape.op("Mul", [x, x]))
        rms = tape.op("Sqrt", [tape.op("Add", [mean_square, tape.const(self.eps, c.types[0].dtype)])])
        return tape.op("Mul", [tape.op("Div", [x, rms]), w])


class RankedBatchnorm(Batchnorm):
    """batchnorm that also checks the input's rank, like nn.BatchNorm1d / nn.BatchNorm2d."""

    abstract = True
    ranks: ClassVar[tuple[int, ...]] = ()
    layout: ClassVar[str] = ""
    other: ClassVar[str] = ""

    def _channels(self, x: TensorType) -> int:
        self.require(
            x.rank in self.ranks,
            f"{self.name} expects a float {self.layout}, got {x}",
            f"use `{self.other}` for rank {x.rank}" if self.other and x.rank in (2, 3, 4) else None,
        )
        return super()._channels(x)


class Batchnorm1d(RankedBatchnorm):
    """Batch normalization of features [B, C] or sequences [B, C, L] (nn.BatchNorm1d)."""

    name = "batchnorm1d"
    aliases = ("batch_norm1d",)
    samples = ({"x": "float32[4, 6]"}, {"x": "float32[3, 4, 7]", "eps": 1e-3, "momentum": 0.2})
    ranks = (2, 3)
    layout = "[B, C] or [B, C, L]"
    other = "batchnorm2d"


class Batchnorm2d(RankedBatchnorm):
    """Batch normalization of images [B, C, H, W] (nn.BatchNorm2d)."""

    name = "batchnorm2d"
    aliases = ("batch_norm2d",)
    samples = ({"x": "float32[4, 3, 5, 5]"},)
    ranks = (4,)
    layout = "[B, C, H, W]"
    other = "batchnorm1d"
