"""The ops a KV cache puts in a decoder's graph (`compile --kv-cache`, see flashc/kvcache.py).

They are variants of `attention` and `positions` that no spec writes: the cache
transform swaps them in. `CachedAttention` takes the keys and values of the P
tokens seen so far ([B, kv_heads, P, head_dim]) beside the T new tokens and
returns its output with the keys and values of all P + T tokens; queries sit at
positions P .. P + T - 1, so rotary embeddings, ALiBi and windows shift with
the cache. `ShiftedPositions` is `positions(T)` read from P on (GPT-2's learned
position embedding). Both are abstract: they are not in the registry, so the
language and its docs do not change. Nothing here imports torch or onnx.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.types import TensorType
from flashc.ops.attention import Attention
from flashc.ops.attention_positions import onnx_length
from flashc.ops.base import Input, Lowering
from flashc.ops.constants import onnx_range, torch_range
from flashc.ops.embedding import Positions


class CachedAttention(Attention):
    """Causal self-attention after a cache: (x, past_key, past_value) -> (y, present_key, present_value)."""

    abstract = True
    inputs = (Input("x"), Input("past_key"), Input("past_value"))

    def cache_type(self, x: TensorType, past: TensorType | None = None) -> TensorType:
        """[B, kv_heads, P, head_dim]: one layer's cached keys (or values) for queries ``x``."""
        _, kv_heads, head_dim = self._heads(int(x.shape[-1]))
        length = past.shape[2] if past is not None else 0
        return TensorType(x.dtype, (x.shape[0], kv_heads, length, head_dim))

    def weights(self, x: TensorType, *rest: TensorType | None) -> dict:
        return super().weights(x)

    def infer(self, x: TensorType, past_key: TensorType, past_value: TensorType) -> tuple[TensorType, ...]:
        super().infer(x)
        want = self.cache_type(x, past_key)
        for name, t in (("past_key", past_key), ("past_value", past_value)):
            self.require(t == want, f"attention's cached {name} must be {want}, got {t}")
        present = want.with_shape((*want.shape[:2], want.shape[2] + x.shape[1], want.shape[3]))
        return x, present, present

    def torch_module(self, x: TensorType, *rest: TensorType | None) -> str:
        return super().torch_module(x)

    def to_torch(self, c: Lowering) -> str:
        x, past_key, past_value = c.inputs
        return f"{c.module}({x}, past_key={past_key}, past_value={past_value})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        x, past_key, past_value = c.inputs
        return self._onnx(tape, c, x, None, None, (past_key, past_value))


class ShiftedPositions(Positions):
    """P, P + 1, ..., P + length - 1: `positions(T)` after P cached tokens (P: axis 2 of a cache input)."""

    abstract = True
    inputs = (Input("past"), *Positions.inputs)

    def infer(self, past: TensorType, *sources: TensorType) -> TensorType:
        return super().infer(*sources)

    def _unshifted(self, c: Lowering) -> Lowering:
        return Lowering(c.inputs[1:], c.types[1:], c.out_types, c.weights, c.module)

    def to_torch(self, c: Lowering) -> str:
        return f"{c.inputs[0]}.shape[2] + {torch_range(self, self._unshifted(c), 0, self.length, 1, 'int64')}"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        ids = onnx_range(self, tape, self._unshifted(c), 0, self.length, 1, "int64")
        return tape.op("Add", [ids, onnx_length(tape, c.inputs[0], 2)])
