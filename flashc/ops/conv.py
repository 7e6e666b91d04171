"""Convolution and pooling over [B, C, H, W] images."""

from __future__ import annotations

import math
from typing import Any

from flashc.ir.dims import Dim, is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param, ints


def conv_out(size: Dim, kernel: int, stride: int, pad: int, dilation: int = 1) -> Dim:
    """floor((size + 2 pad - dilation (kernel - 1) - 1) / stride) + 1, symbolic-safe."""
    return (size + (2 * pad - dilation * (kernel - 1) - 1)) // stride + 1


def _image(op: Op, x: TensorType) -> None:
    op.require(
        x.rank == 4 and x.is_float,
        f"`{op.name}` expects a float image [B, C, H, W], got {x}",
        "reshape the input to [B, C, H, W]" if x.rank != 4 else None,
    )


def _spatial(op: Op, x: TensorType, kernel: tuple, stride: tuple, pad: tuple, dil: tuple) -> tuple:
    out = []
    for axis, (size, k, s, p, d) in enumerate(zip(x.shape[2:], kernel, stride, pad, dil)):
        o = conv_out(size, k, s, p, d)
        op.require(
            not is_static(o) or o >= 1,
            f"`{op.name}` kernel {k} (dilation {d}) does not fit input axis {axis + 2} of size {size}"
            f" with padding {p}",
        )
        out.append(o)
    return tuple(out)


class Conv2d(Op):
    """2-D convolution: shared filters slid over the image (weight sharing)."""

    family = "conv"
    params = {
        "out_channels": Param(int),
        "kernel": Param("ints", doc="int or (kh, kw)"),
        "stride": Param("ints", 1),
        "padding": Param("ints", 0),
        "dilation": Param("ints", 1),
        "groups": Param(int, 1),
        "bias": Param(bool, True),
    }
    samples = (
        {"x": "float32[2, 3, 9, 9]", "out_channels": 4, "kernel": 3},
        {"x": "float32[1, 4, 8, 10]", "out_channels": 6, "kernel": (3, 2), "stride": 2, "padding": 1, "groups": 2},
    )

    def _geometry(self) -> tuple[tuple[int, ...], ...]:
        return tuple(ints(getattr(self, k), 2) for k in ("kernel", "stride", "padding", "dilation"))

    def _in_channels(self, x: TensorType) -> int:
        _image(self, x)
        c = x.shape[1]
        self.require(is_static(c), f"conv2d needs a fixed channel count, got {x.shape_str()}")
        self.require(
            c % self.groups == 0 and self.out_channels % self.groups == 0,
            f"conv2d groups={self.groups} must divide in_channels={c} and out_channels={self.out_channels}",
        )
        return int(c)

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        cin = self._in_channels(x)
        k = self._geometry()[0]
        fan_in = cin // self.groups * k[0] * k[1]
        bound = 1 / math.sqrt(fan_in)
        w = {"weight": WeightSpec((self.out_channels, cin // self.groups, *k), ("uniform", bound))}
        if self.bias:
            w["bias"] = WeightSpec((self.out_channels,), ("uniform", bound))
        return w

    def infer(self, x: TensorType) -> TensorType:
        self._in_channels(x)
        k, s, p, d = self._geometry()
        return x.with_shape((x.shape[0], self.out_channels) + _spatial(self, x, k, s, p, d))

    def torch_module(self, x: TensorType) -> str:
        k, s, p, d = self._geometry()
        return (
            f"nn.Conv2d({self._in_channels(x)}, {self.out_channels}, kernel_size={k}, stride={s}, "
            f"padding={p}, dilation={d}, groups={self.groups}, bias={self.bias})"
        )

    def to_torch(self, c: Lowering) -> str:
        return f"{c.module}({c.inputs[0]})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        k, s, p, d = self._geometry()
        ins = [c.inputs[0], c.weights["weight"]] + ([c.weights["bias"]] if self.bias else [])
        attrs = {"kernel_shape": list(k), "strides": list(s), "pads": list(p) * 2, "dilations": list(d), "group": self.groups}
        return tape.op("Conv", ins, attrs)


class Pool2d(Op):
    """Shared parameter schema and shape rule of 2-D pooling."""

    abstract = True
    family = "conv"
    params = {
        "kernel": Param("ints"),
        "stride": Param("ints", None, doc="defaults to the kernel size"),
        "padding": Param("ints", 0),
    }
    samples = (
        {"x": "float32[2, 3, 8, 8]", "kernel": 2},
        {"x": "float32[1, 2, 9, 7]", "kernel": 3, "stride": 2, "padding": 1},
    )

    def _geometry(self) -> tuple[tuple[int, ...], ...]:
        k = ints(self.kernel, 2)
        s = ints(self.stride, 2) if self.stride is not None else k
        p = ints(self.padding, 2)
        self.require(all(2 * pi <= ki for pi, ki in zip(p, k)), f"`{self.name}` padding must be at most half the kernel")
        return k, s, p

    def infer(self, x: TensorType) -> TensorType:
        _image(self, x)
        k, s, p = self._geometry()
        return x.with_shape(x.shape[:2] + _spatial(self, x, k, s, p, (1, 1)))

    def _onnx_attrs(self) -> dict[str, Any]:
        k, s, p = self._geometry()
        return {"kernel_shape": list(k), "strides": list(s), "pads": list(p) * 2}


class MaxPool2d(Pool2d):
    """The maximum of each window."""

    aliases = ("max_pool",)

    def to_torch(self, c: Lowering) -> str:
        k, s, p = self._geometry()
        return f"F.max_pool2d({c.inputs[0]}, {k}, {s}, {p})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("MaxPool", [c.inputs[0]], self._onnx_attrs())


class AvgPool2d(Pool2d):
    """The mean of each window (padding counted, as in PyTorch)."""

    aliases = ("avg_pool",)

    def to_torch(self, c: Lowering) -> str:
        k, s, p = self._geometry()
        return f"F.avg_pool2d({c.inputs[0]}, {k}, {s}, {p})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("AveragePool", [c.inputs[0]], {**self._onnx_attrs(), "count_include_pad": 1})
