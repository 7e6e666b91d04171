"""Convolution and pooling over [B, C, L] signals and [B, C, H, W] images."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from flashc.ir.dims import Dim, is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param, ints

LAYOUTS = {1: ("signal", "[B, C, L]"), 2: ("image", "[B, C, H, W]")}


def conv_out(size: Dim, kernel: int, stride: int, pad: int, dilation: int = 1) -> Dim:
    """floor((size + 2 pad - dilation (kernel - 1) - 1) / stride) + 1, symbolic-safe."""
    return (size + (2 * pad - dilation * (kernel - 1) - 1)) // stride + 1


def transposed_out(size: Dim, kernel: int, stride: int, pad: int, dilation: int, output_padding: int) -> Dim:
    """(size - 1) stride - 2 pad + dilation (kernel - 1) + output_padding + 1, symbolic-safe."""
    return (size - 1) * stride + (dilation * (kernel - 1) + output_padding + 1 - 2 * pad)


def same_pads(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """PyTorch's padding='same' at stride 1: dilation (kernel - 1) in all, the odd one at the end."""
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple(t // 2 for t in totals), tuple(t - t // 2 for t in totals)


def spatial_input(op: Op, x: TensorType, n: int) -> None:
    what, layout = LAYOUTS[n]
    op.require(
        x.rank == n + 2 and x.is_float,
        f"`{op.name}` expects a float {what} {layout}, got {x}",
        f"reshape the input to {layout}" if x.rank != n + 2 else None,
    )


def _ints(op: Op, key: str, n: int, minimum: int) -> tuple[int, ...]:
    """The setting ``key`` as ``n`` ints, each at least ``minimum``."""
    value = getattr(op, key)
    out = ints(value, n)
    op.require(
        len(out) == n and all(v >= minimum for v in out),
        f"`{op.name}` {key} must be a whole number >= {minimum} or a tuple of {n} of them, got {value!r}",
    )
    return out


def _grouped_channels(op: Op, x: TensorType, n: int) -> int:
    """The input channels of a convolution, checked against its groups and out_channels."""
    spatial_input(op, x, n)
    c = x.shape[1]
    op.require(is_static(c), f"`{op.name}` needs a fixed channel count, got {x.shape_str()}")
    op.require(op.out_channels >= 1 and op.groups >= 1,
               f"`{op.name}` needs out_channels >= 1 and groups >= 1, got {op.out_channels} and {op.groups}")
    op.require(
        c % op.groups == 0 and op.out_channels % op.groups == 0,
        f"{op.name} groups={op.groups} must divide in_channels={c} and out_channels={op.out_channels}",
    )
    return int(c)


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


def _conv_weights(op: Op, shape: tuple[int, ...], fan_in: int) -> dict[str, WeightSpec]:
    """nn.ConvNd's layout and init: kaiming-uniform (a = sqrt 5) gives bound 1/sqrt(fan_in) for both."""
    bound = 1 / math.sqrt(fan_in)
    w = {"weight": WeightSpec(shape, ("uniform", bound))}
    if op.bias:
        w["bias"] = WeightSpec((op.out_channels,), ("uniform", bound))
    return w


class Conv(Op):
    """Shared schema, shape rule and lowerings of conv1d and conv2d."""

    abstract = True
    family = "conv"
    dims: ClassVar[int] = 2
    params = {
        "out_channels": Param(int),
        "kernel": Param("ints", doc="int or a tuple, one per spatial axis"),
        "stride": Param("ints", 1),
        "padding": Param("ints", 0, choices=("same",), doc='zeros added at both ends of each axis, or "same"'),
        "dilation": Param("ints", 1),
        "groups": Param(int, 1),
        "bias": Param(bool, True),
        "same": Param(bool, False, doc="pad so the output keeps the input size (stride 1), as padding='same'"),
    }

    @property
    def _same(self) -> bool:
        # `padding = "same"` as in PyTorch, or the bare flag `same`.
        return bool(self.same) or self.padding == "same"

    def _geometry(self) -> tuple[tuple[int, ...], ...]:
        """kernel, stride, padding (symmetric; zeros with `same`), dilation."""
        n = self.dims
        k, s, d = (_ints(self, key, n, 1) for key in ("kernel", "stride", "dilation"))
        if not self._same:
            return k, s, _ints(self, "padding", n, 0), d
        self.require(
            all(v == 1 for v in s),
            f"`{self.name}` with `same` padding needs stride 1, got stride {self.stride!r}",
            "PyTorch defines padding='same' for stride 1 only; give `padding` explicitly",
        )
        self.require(
            self.padding in (0, "same"),
            f"`{self.name}` takes either `same` or `padding`, got both (padding {self.padding!r})",
        )
        return k, s, (0,) * n, d

    def _in_channels(self, x: TensorType) -> int:
        return _grouped_channels(self, x, self.dims)

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        cin = self._in_channels(x)
        k = self._geometry()[0]
        return _conv_weights(self, (self.out_channels, cin // self.groups, *k), cin // self.groups * math.prod(k))

    def infer(self, x: TensorType) -> TensorType:
        self._in_channels(x)
        k, s, p, d = self._geometry()
        spatial = x.shape[2:] if self._same else _spatial(self, x, k, s, p, d)
        return x.with_shape((x.shape[0], self.out_channels) + tuple(spatial))

    def torch_module(self, x: TensorType) -> str:
        k, s, p, d = self._geometry()
        padding = repr("same") if self._same else str(p)
        return (
            f"nn.Conv{self.dims}d({self._in_channels(x)}, {self.out_channels}, kernel_size={k}, stride={s}, "
            f"padding={padding}, dilation={d}, groups={self.groups}, bias={self.bias})"
        )


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        k, s, p, d = self._geometry()
        begin, end = same_pads(k, d) if self._same else (p, p)
        ins = [c.inputs[0], c.weights["weight"]] + ([c.weights["bias"]] if self.bias else [])
        attrs = {"kernel_shape": list(k), "strides": list(s), "pads": [*begin, *end], "dilations": list(d),
                 "group": self.groups}
        return tape.op("Conv", ins, attrs)


class Conv2d(Conv):
    """2-D convolution: shared filters slid over the image (weight sharing)."""

    dims = 2
    samples = (
        {"x": "float32[2, 3, 9, 9]", "out_channels": 4, "kernel": 3},
        {"x": "float32[1, 4, 8, 10]", "out_channels": 6, "kernel": (3, 2), "stride": 2, "padding": 1, "groups": 2},
        {"x": "float32[2, 4, 7, 8]", "out_channels": 6, "kernel": (4, 3), "dilation": (1, 2), "groups": 2,
         "same": True},
    )


class Conv1d(Conv):
    """1-D convolution over a sequence [B, C, L]: the same filter at every position."""

    dims = 1
    samples = (
        {"x": "float32[2, 3, 11]", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1},
        {"x": "float32[2, 4, 9]", "out_channels": 6, "kernel": 4, "dilation": 3, "groups": 2, "padding": "same"},
        {"x": "float32[1, 6, 12]", "out_channels": 3, "kernel": 2, "dilation": 2, "groups": 3, "bias": False},
    )


class ConvTranspose2d(Op):
    """The gradient of conv2d with respect to its input: learned upsampling of an image."""

    family = "conv"
    aliases = ("conv_transpose",)
    params = {
        "out_channels": Param(int),
        "kernel": Param("ints", doc="int or (kh, kw)"),
        "stride": Param("ints", 1),
        "padding": Param("ints", 0, doc="removed from both ends of the output"),
        "output_padding": Param("ints", 0, doc="added to one end of the output, to pick among sizes"),
        "dilation": Param("ints", 1),
        "groups": Param(int, 1),
        "bias": Param(bool, True),
    }
    samples = (
        {"x": "float32[2, 3, 5, 5]", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
        {"x": "float32[1, 4, 4, 6]", "out_channels": 6, "kernel": (2, 3), "stride": (2, 1), "dilation": (1, 2),
         "groups": 2, "bias": False},
    )

    def _geometry(self) -> tuple[tuple[int, ...], ...]:
        k, s, d = (_ints(self, key, 2, 1) for key in ("kernel", "stride", "dilation"))
        p, op = (_ints(self, key, 2, 0) for key in ("padding", "output_padding"))
        self.require(
            all(o < si or o < di for o, si, di in zip(op, s, d)),
            f"`{self.name}` output_padding {self.output_padding!r} must be smaller than the stride "
            f"{self.stride!r} or the dilation {self.dilation!r}",
        )
        return k, s, p, op, d

    def _in_channels(self, x: TensorType) -> int:
        return _grouped_channels(self, x, 2)

    def weights(self, x: TensorType) -> dict[str, WeightSpec]:
        cin = self._in_channels(x)
        k = self._geometry()[0]
        per_group = self.out_channels // self.groups
        return _conv_weights(self, (cin, per_group, *k), per_group * math.prod(k))

    def infer(self, x: TensorType) -> TensorType:
        self._in_channels(x)
        out = []
        for axis, (size, k, s, p, op, d) in enumerate(zip(x.shape[2:], *self._geometry())):
            o = transposed_out(size, k, s, p, d, op)
            self.require(not is_static(o) or o >= 1,
                         f"`{self.name}` padding {p} leaves no output on axis {axis + 2} of size {size}")
            out.append(o)
        return x.with_shape((x.shape[0], self.out_channels, *out))

    def torch_module(self, x: TensorType) -> str:
        k, s, p, op, d = self._geometry()
        return (
            f"nn.ConvTranspose2d({self._in_channels(x)}, {self.out_channels}, kernel_size={k}, stride={s}, "
            f"padding={p}, output_padding={op}, groups={self.groups}, bias={self.bias}, dilation={d})"
        )


    def to_onnx(self, tape: Any, c: Lowering) -> str:
        k, s, p, op, d = self._geometry()
        ins = [c.inputs[0], c.weights["weight"]] + ([c.weights["bias"]] if self.bias else [])
        attrs = {"kernel_shape": list(k), "strides": list(s), "pads": list(p) * 2, "output_padding": list(op),
                 "dilations": list(d), "group": self.groups}
        return tape.op("ConvTranspose", ins, attrs)


class Pool(Op):
    """Shared parameter schema and shape rule of windowed pooling."""

    abstract = True
    family = "conv"
    dims: ClassVar[int] = 2
    params = {
        "kernel": Param("ints"),
        "stride": Param("ints", None, doc="defaults to the kernel size"),
        "padding": Param("ints", 0),
    }

    def _geometry(self) -> tuple[tuple[int, ...], ...]:
        k = _ints(self, "kernel", self.dims, 1)
        s = _ints(self, "stride", self.dims, 1) if self.stride is not None else k
        p = _ints(self, "padding", self.dims, 0)
        self.require(all(2 * pi <= ki for pi, ki in zip(p, k)), f"`{self.name}` padding must be at most half the kernel")
        return k, s, p

    def infer(self, x: TensorType) -> TensorType:
        spatial_input(self, x, self.dims)
        k, s, p = self._geometry()
        return x.with_shape(x.shape[:2] + _spatial(self, x, k, s, p, (1,) * self.dims))

    def _torch_call(self, fn: str, c: Lowering) -> str:
        k, s, p = self._geometry()
        return f"F.{fn}{self.dims}d({c.inputs[0]}, {k}, {s}, {p})"

    def _onnx_attrs(self) -> dict[str, Any]:
        k, s, p = self._geometry()
        return {"kernel_shape": list(k), "strides": list(s), "pads": list(p) * 2}


class MaxPool(Pool):
    """The maximum of each window."""

    abstract = True

    def to_torch(self, c: Lowering) -> str:
        return self._torch_call("max_pool", c)

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("MaxPool", [c.inputs[0]], self._onnx_attrs())


class AvgPool(Pool):
    """The mean of each window (padding counted, as in PyTorch)."""

    abstract = True

    def to_torch(self, c: Lowering) -> str:
        return self._torch_call("avg_pool", c)

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("AveragePool", [c.inputs[0]], {**self._onnx_attrs(), "count_include_pad": 1})


POOL2D_SAMPLES = (
    {"x": "float32[2, 3, 8, 8]", "kernel": 2},
    {"x": "float32[1, 2, 9, 7]", "kernel": 3, "stride": 2, "padding": 1},
)
POOL1D_SAMPLES = (
    {"x": "float32[2, 3, 8]", "kernel": 2},
    {"x": "float32[1, 2, 9]", "kernel": 3, "stride": 2, "padding": 1},
)


class MaxPool2d(MaxPool):
    """The maximum of each window of an image."""

    aliases = ("max_pool",)
    samples = POOL2D_SAMPLES


class AvgPool2d(AvgPool):
    """The mean of each window of an image (padding counted, as in PyTorch)."""

    aliases = ("avg_pool",)
    samples = POOL2D_SAMPLES


class MaxPool1d(MaxPool):
    """The maximum of each window of a sequence."""

    dims = 1
    samples = POOL1D_SAMPLES


class AvgPool1d(AvgPool):
    """The mean of each window of a sequence (padding counted, as in PyTorch)."""

    dims = 1
    samples = POOL1D_SAMPLES


class AdaptivePool2d(Op):
    """Pool an image down to `output_size`; ONNX has it only as even windows (or global pooling)."""

    abstract = True
    family = "conv"
    params = {"output_size": Param("ints", doc="int or (oh, ow)")}
    samples = (
        {"x": "float32[2, 3, 8, 6]", "output_size": (4, 3)},
        {"x": "float32[2, 3, 5, 7]", "output_size": 1},
        {"x": "float32[1, 2, 6, 6]", "output_size": 2},
    )
    torch_fn: ClassVar[str] = ""
    onnx_pool: ClassVar[str] = ""
    fixed: ClassVar[str] = ""  # the op with an explicit window

    def _window(self, x: TensorType) -> tuple[int, ...] | None:
        """The ONNX pooling window, or None for global pooling (output size 1)."""
        out = _ints(self, "output_size", 2, 1)
        if out == (1, 1):
            return None
        sizes = x.shape[2:]
        self.require(
            all(is_static(s) and s % o == 0 for s, o in zip(sizes, out)),
            f"`{self.name}` to {out} needs input sizes that it divides, got {x.shape_str()}: ONNX has no adaptive "
            "pooling, only even windows",
            f"choose an output size that divides {' x '.join(str(s) for s in sizes)}, or use `{self.fixed}` with a kernel",
        )
        return tuple(int(s) // o for s, o in zip(sizes, out))

    def infer(self, x: TensorType) -> TensorType:
        spatial_input(self, x, 2)
        self._window(x)
        return x.with_shape(x.shape[:2] + _ints(self, "output_size", 2, 1))

    def to_torch(self, c: Lowering) -> str:
        return f"F.{self.torch_fn}({c.inputs[0]}, {_ints(self, 'output_size', 2, 1)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        window = self._window(c.types[0])
        if window is None:
            return tape.op(f"Global{self.onnx_pool}", [c.inputs[0]])
        attrs = {"kernel_shape": list(window), "strides": list(window)}
        return tape.op(self.onnx_pool, [c.inputs[0]], attrs)


class AdaptiveAvgPool2d(AdaptivePool2d):
    """The mean over each of `output_size` equal windows."""

    torch_fn = "adaptive_avg_pool2d"
    onnx_pool = "AveragePool"
    fixed = "avg_pool2d"


class AdaptiveMaxPool2d(AdaptivePool2d):
    """The maximum over each of `output_size` equal windows."""

    torch_fn = "adaptive_max_pool2d"
    onnx_pool = "MaxPool"
    fixed = "max_pool2d"


class GlobalPool(Op):
    """Pool each channel over all its spatial positions: [B, C, ...] -> [B, C, 1, ...]."""

    abstract = True
    family = "conv"
    samples = ({"x": "float32[2, 3, 5, 4]"}, {"x": "float32[2, 4, 7]"})
    torch_method: ClassVar[str] = ""
    onnx_op: ClassVar[str] = ""

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.rank >= 3 and x.is_float, f"`{self.name}` expects a float [B, C, ...] with spatial axes, got {x}")
        return x.with_shape(x.shape[:2] + (1,) * (x.rank - 2))

    def to_torch(self, c: Lowering) -> str:
        axes = tuple(range(2, c.types[0].rank))
        return f"{c.inputs[0]}.{self.torch_method}({axes}, keepdim=True)"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op(self.onnx_op, [c.inputs[0]])


class GlobalAvgPool(GlobalPool):
    """The mean of each channel: [B, C, H, W] -> [B, C, 1, 1]."""

    torch_method = "mean"
    onnx_op = "GlobalAveragePool"


class GlobalMaxPool(GlobalPool):
    """The maximum of each channel: [B, C, H, W] -> [B, C, 1, 1]."""

    torch_method = "amax"
    onnx_op = "GlobalMaxPool"
