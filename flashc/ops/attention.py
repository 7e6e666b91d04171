"""Multi-head scaled dot-product attention: self, causal, padded and cross.

softmax(Q K^T / sqrt(d_head)) V per head, heads concatenated and projected
(the seed's section 1). Queries come from `x`; keys and values from `kv` when
given (cross-attention), else from `x` (self-attention).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.linalg import onnx_linear

TORCH_HELPER = '''
class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with q, k, v and out projections."""

    def __init__(self, dim, heads, kv_dim=None, bias=True, causal=False, dropout=0.0):
        super().__init__()
        kv_dim = kv_dim or dim
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(kv_dim, dim, bias=bias)
        self.v = nn.Linear(kv_dim, dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def split_heads(self, x, kv):
        """Project queries from x, keys and values from kv: [B, h, T, C/h] and [B, h, S, C/h]."""
        B, T, C = x.shape
        S, h = kv.shape[1], self.heads
        q = self.q(x).view(B, T, h, C // h).transpose(1, 2)
        k = self.k(kv).view(B, S, h, C // h).transpose(1, 2)
        v = self.v(kv).view(B, S, h, C // h).transpose(1, 2)
        return q, k, v

    def forward(self, x, kv=None, key_padding_mask=None):
        kv = x if kv is None else kv
        B, T, C = x.shape
        S = kv.shape[1]
        q, k, v = self.split_heads(x, kv)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        if self.causal and mask is not None:
            mask = mask & torch.ones(T, S, dtype=torch.bool, device=x.device).tril()
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(B, T, C))
'''


class Attention(Op):
    """Multi-head attention; `causal` masks the future, `key_padding_mask` (true = pad) hides keys."""

    family = "attention"
    inputs = (
        Input("x"),
        Input("kv", optional=True),
        Input("key_padding_mask", optional=True, dtypes=("bool",)),
    )
    params = {
        "heads": Param(int, doc="number of heads; must divide the model width", minimum=1),
        "causal": Param(bool, False, doc="each position attends only to itself and earlier ones"),
        "bias": Param(bool, True),
        "dropout": Param(float, 0.0, doc="dropout on the attention weights (training only)"),
    }
    torch_prelude = (TORCH_HELPER,)
    samples = (
        {"x": "float32[2, 5, 8]", "heads": 2},
        {"x": "float32[2, 5, 8]", "heads": 4, "causal": True},
        {"x": "float32[2, 5, 8]", "kv": "float32[2, 7, 6]", "heads": 2},
        {"x": "float32[2, 5, 8]", "key_padding_mask": "bool[2, 5]", "heads": 2, "causal": True},
    )

    def _dims(self, x: TensorType, kv: TensorType | None) -> tuple[int, int]:
        kv = kv or x
        for name, t in (("queries", x), ("keys/values", kv)):
            self.require(
                t.rank == 3 and t.is_float,
                f"attention expects {name} as float [B, T, D], got {t}",
            )
            self.require(is_static(t.shape[-1]), f"attention needs a fixed width, got {t.shape_str()}")
        d, dkv = int(x.shape[-1]), int(kv.shape[-1])
        self.require(d >= 1 and dkv >= 1, f"attention needs a width >= 1, got {x} and {kv}")
        self.require(self.heads >= 1, f"attention needs heads >= 1, got {self.heads}")
        self.require(d % self.heads == 0, f"attention: heads={self.heads} must divide the width {d}")
        return d, dkv

    def weights(self, x: TensorType, kv: TensorType | None = None, mask: TensorType | None = None) -> dict[str, WeightSpec]:
        d, dkv = self._dims(x, kv)
        w: dict[str, WeightSpec] = {}
        for proj, fan_in in (("q", d), ("k", dkv), ("v", dkv), ("out", d)):
            bound = 1 / math.sqrt(fan_in)
            w[f"{proj}.weight"] = WeightSpec((d, fan_in), ("uniform", bound))
            if self.bias:
                w[f"{proj}.bias"] = WeightSpec((d,), ("uniform", bound))
        return w

    def infer(self, x: TensorType, kv: TensorType | None = None, mask: TensorType | None = None) -> TensorType:
        self._dims(x, kv)
        keys = kv or x
        self.require(keys.shape[0] == x.shape[0], f"attention: batch of keys {keys} differs from queries {x}")
        if mask is not None:
            self.require(
                mask.rank == 2 and mask.shape[1] == keys.shape[1],
                f"key_padding_mask must be bool[B, {keys.shape[1]}] (true = padding), got {mask}",
            )
        return x

    def torch_module(self, x: TensorType, kv: TensorType | None = None, mask: TensorType | None = None) -> str:
        d, dkv = self._dims(x, kv)
        return (
            f"MultiHeadAttention({d}, {self.heads}, kv_dim={dkv}, bias={self.bias}, "
            f"causal={self.causal}, dropout={self.dropout!r})"
        )

    def to_torch(self, c: Lowering) -> str:
        x, kv, mask = c.inputs
        args = [x] + ([f"kv={kv}"] if kv else []) + ([f"key_padding_mask={mask}"] if mask else [])
        return f"{c.module}({', '.join(args)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, kv, mask = c.inputs
        kv = kv or x
        w = c.weights

        def project(name: str, src: str) -> str:
            return onnx_linear(tape, src, w[f"{name}.weight"], w.get(f"{name}.bias"), 3)

        q, k, v = project("q", x), project("k", kv), project("v", kv)
        keep = None
        if mask is not None:
            keep = tape.op("Not", [tape.op("Unsqueeze", [mask, tape.const([1, 2], "int64")])])  # [B, 1, 1, S]
        if tape.opset >= 23:
            y = self._fused(tape, x, q, k, v, mask, keep)
        else:
            y = self._decomposed(tape, q, k, v, keep, int(c.types[0].shape[-1]))
        return project("out", y)

    def _fused(self, tape: Any, x: str, q: str, k: str, v: str, mask: str | None, keep: str | None) -> str:
        """Opset 23 `Attention` on [B, T, D] projections; heads split inside the op."""
        ins = [q, k, v]
        if keep is not None:
            rows = tape.op("Shape", [x], {"start": 1, "end": 2})
            batch = tape.op("Shape", [mask], {"start": 0, "end": 1})
            cols = tape.op("Shape", [mask], {"start": 1, "end": 2})
            shape = tape.op("Concat", [batch, tape.const([1], "int64"), rows, cols], {"axis": 0})
            ins.append(tape.op("Expand", [keep, shape]))  # onnxruntime wants [B, 1, T, S]
        attrs = {"q_num_heads": self.heads, "kv_num_heads": self.heads, "is_causal": int(self.causal)}
        return tape.op("Attention", ins, attrs)

    def _decomposed(self, tape: Any, q: str, k: str, v: str, keep: str | None, d: int) -> str:
        """Standard ops for runtimes before opset 23: split heads, masked softmax, merge."""
        h, dh = self.heads, d // self.heads
        split = tape.const([0, 0, h, dh], "int64")

        def heads(t: str, perm: list[int]) -> str:
            return tape.op("Transpose", [tape.op("Reshape", [t, split])], {"perm": perm})

        scores = tape.op("MatMul", [heads(q, [0, 2, 1, 3]), heads(k, [0, 2, 3, 1])])  # [B, h, T, S]
        scores = tape.op("Mul", [scores, tape.const(1 / math.sqrt(dh), "float32")])
        allowed = keep
        if self.causal:
            rows = tape.op("Shape", [q], {"start": 1, "end": 2})
            cols = tape.op("Shape", [k], {"start": 1, "end": 2})
            ones = tape.op("ConstantOfShape", [tape.op("Concat", [rows, cols], {"axis": 0})],
                           {"value": onnx_tensor_one()})
            tril = tape.op("Cast", [tape.op("Trilu", [ones], {"upper": 0})], {"to": 9})  # bool [T, S]
            allowed = tril if allowed is None else tape.op("And", [allowed, tril])
        if allowed is not None:  # a row with no allowed key gets zero weights, as in torch and opset 23
            scores = tape.op("Where", [allowed, scores, tape.const(float(np.finfo(np.float32).min), "float32")])
        probs = tape.op("Softmax", [scores], {"axis": -1})
        if allowed is not None:
            probs = tape.op("Where", [allowed, probs, tape.const(0.0, "float32")])
        y = tape.op("MatMul", [probs, heads(v, [0, 2, 1, 3])])  # [B, h, T, dh]
        merged = tape.op("Transpose", [y], {"perm": [0, 2, 1, 3]})
        return tape.op("Reshape", [merged, tape.const([0, 0, d], "int64")])


def onnx_tensor_one() -> Any:
    """A float 1 as an ONNX attribute tensor (ConstantOfShape's fill value)."""
    from onnx import helper

    return helper.make_tensor("one", 1, [1], [1.0])
