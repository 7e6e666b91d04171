"""The op registry. Importing this package registers every op family."""

from flashc.ops import activations, attention, conv, elementwise, embedding, linalg, norm, reduce, shape
from flashc.ops.base import REGISTRY, Input, Lowering, Op, Param, all_ops, lookup

__all__ = [
    "REGISTRY", "Input", "Lowering", "Op", "Param", "all_ops", "lookup",
    "activations", "attention", "conv", "elementwise", "embedding", "linalg", "norm", "reduce", "shape",
]
