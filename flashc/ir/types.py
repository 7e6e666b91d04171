"""Tensor types: a dtype and a shape of (possibly symbolic) dims."""

from __future__ import annotations

from dataclasses import dataclass

from flashc.ir.dims import Dim, fmt

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")
INPUT_DTYPES = ("float32", "int64", "int32", "bool")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT_DTYPES = ("int64", "int32", "int8", "uint8")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(dtype, self.shape)

    def shape_str(self) -> str:
        return "[" + ", ".join(fmt(d) for d in self.shape) + "]"

    def __str__(self) -> str:
        return f"{self.dtype}{self.shape_str()}"
