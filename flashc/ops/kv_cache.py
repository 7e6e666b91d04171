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


class CrossKeys(Attention):
    """A cross-attention's keys and values of the whole source, [B, kv_heads, S, head_dim] each.

    An encoder-decoder's cached decoder reads them at every step; the encoder computes them once.
    """

    abstract = True
    inputs = (Input("kv"),)

    def cache_type(self, kv: TensorType, width: int) -> TensorType:
        _, kv_heads, head_dim = self._heads(width)
        return TensorType(kv.dtype, (kv.shape[0], kv_heads, kv.shape[1], head_dim))

    def torch_module(self, *types: TensorType | None) -> str:
        return super().torch_module(*self.attrs["query_type"])

    def infer(self, kv: TensorType) -> tuple[TensorType, TensorType]:
        t = self.cache_type(kv, int(self.attrs["query_type"][0].shape[-1]))
        return t, t

    def to_torch(self, c: Lowering) -> str:
        return f"{c.module}.cross_keys({c.inputs[0]})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        from flashc.ops.linalg import onnx_linear

        _, kv_heads, head_dim = self._heads(int(self.attrs["query_type"][0].shape[-1]))
        split = tape.const([0, 0, kv_heads, head_dim], "int64")
        out = []
        for name in ("k", "v"):
            t = onnx_linear(tape, c.inputs[0], c.weights[f"{name}.weight"], c.weights.get(f"{name}.bias"), 3)
            out.append(tape.op("Transpose", [tape.op("Reshape", [t, split])], {"perm": [0, 2, 1, 3]}))
        return out


class CachedCrossAttention(Attention):
    """Cross-attention reading keys/values a `CrossKeys` computed: (x, key, value[, key_padding_mask]) -> y."""

    abstract = True
    inputs = (Input("x"), Input("key"), Input("value"), Input("key_padding_mask", optional=True))

    def weights(self, x: TensorType, *rest: TensorType | None) -> dict:
        return {}

    def torch_module(self, x: TensorType, *rest: TensorType | None) -> str:
        return super().torch_module(*self.attrs["query_type"])

    def infer(self, x: TensorType, *rest: TensorType | None) -> TensorType:
        return x

    def to_torch(self, c: Lowering) -> str:
        x, key, value, mask = c.inputs
        return f"{c.module}.cached_cross({x}, {key}, {value}{f', key_padding_mask={mask}' if mask else ''})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        from flashc.ops.linalg import onnx_linear

        x, key, value, pad = c.inputs
        heads, kv_heads, head_dim = self._heads(int(c.types[0].shape[-1]))
        w = c.weights
        q = onnx_linear(tape, x, w["q.weight"], w.get("q.bias"), 3)
        keep = None
        if pad is not None:
            keep = tape.op("Not", [tape.op("Unsqueeze", [pad, tape.const([1, 2], "int64")])])  # [B, 1, 1, S]
        scale = self.setting("scale")
        scale = head_dim**-0.5 if scale is None else scale
        y = self._decomposed(tape, q, key, value, keep, None, scale, heads, kv_heads, head_dim, split=False)
        return onnx_linear(tape, y, w["out.weight"], w.get("out.bias"), 3)
