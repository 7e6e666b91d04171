"""Resampling images: upsample by interpolation, pixel_shuffle (sub-pixel convolution)."""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param, ints
from flashc.ops.conv import spatial_input

# ONNX Resize attributes giving PyTorch's interpolation at an integer scale.
RESIZE_MODES = {
    ("nearest", False): {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    ("bilinear", False): {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
    ("bilinear", True): {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
}


class Upsample(Op):
    """Enlarge an image by whole-number factors: copy the nearest pixel, or interpolate bilinearly."""

    family = "resample"
    params = {
        "scale": Param("ints", doc="int or (sh, sw), each >= 1"),
        "mode": Param(str, "nearest", choices=("nearest", "bilinear")),
        "align_corners": Param(bool, False, doc="bilinear only: corner pixels of input and output coincide"),
    }
    samples = (
        {"x": "float32[2, 3, 4, 5]", "scale": 2},
        {"x": "float32[2, 2, 3, 4]", "scale": (2, 3), "mode": "bilinear"},
        {"x": "float32[1, 2, 4, 3]", "scale": 3, "mode": "bilinear", "align_corners": True},
    )

    def _scale(self) -> tuple[int, ...]:
        s = ints(self.scale, 2)
        self.require(len(s) == 2 and all(v >= 1 for v in s),
                     f"upsample scale must be a whole number >= 1 or a pair of them, got {self.scale!r}")
        self.require(not self.align_corners or self.mode == "bilinear",
                     f"upsample align_corners applies to mode 'bilinear' only, got mode {self.mode!r}")
        return s

    def infer(self, x: TensorType) -> TensorType:
        spatial_input(self, x, 2)
        sh, sw = self._scale()
        return x.with_shape((*x.shape[:2], x.shape[2] * sh, x.shape[3] * sw))

    def to_torch(self, c: Lowering) -> str:
        factors = tuple(float(s) for s in self._scale())
        corners = f", align_corners={self.align_corners}" if self.mode == "bilinear" else ""
        return f"F.interpolate({c.inputs[0]}, scale_factor={factors}, mode={self.mode!r}{corners})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        scales = tape.const([1.0, 1.0, *(float(s) for s in self._scale())], "float32")
        return tape.op("Resize", [c.inputs[0], None, scales], RESIZE_MODES[self.mode, self.align_corners])


class PixelShuffle(Op):
    """[B, C r^2, H, W] -> [B, C, H r, W r]: channels become an r x r block of pixels."""

    family = "resample"
    params = {"upscale": Param(int, doc="r, the factor on height and width")}
    samples = ({"x": "float32[2, 8, 3, 4]", "upscale": 2}, {"x": "float32[1, 18, 2, 2]", "upscale": 3})

    def infer(self, x: TensorType) -> TensorType:
        spatial_input(self, x, 2)
        r, c = self.upscale, x.shape[1]
        self.require(r >= 1, f"pixel_shuffle upscale must be >= 1, got {r}")
        self.require(is_static(c), f"pixel_shuffle needs a fixed channel count, got {x.shape_str()}")
        self.require(
            c % (r * r) == 0,
            f"pixel_shuffle upscale {r} needs channels divisible by {r * r}, got {c} channels in {x.shape_str()}",
            f"give the layer before it {r * r} times the channels wanted after the shuffle",
        )
        return x.with_shape((x.shape[0], c // (r * r), x.shape[2] * r, x.shape[3] * r))

    def to_torch(self, c: Lowering) -> str:
        return f"F.pixel_shuffle({c.inputs[0]}, {self.upscale})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("DepthToSpace", [c.inputs[0]], {"blocksize": self.upscale, "mode": "CRD"})
