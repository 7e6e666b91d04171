"""Attention primitives beside the `attention` layer.

`scaled_dot_product(q, k, v)` is softmax(q k^T * scale) v on tensors the spec
has already split into heads; `hard_attention(heads, top_k)` is a multi-head
layer whose queries each attend to only their top-k keys (the seed's hard
attention: a discrete, non-differentiable choice, trained straight-through).
"""

from __future__ import annotations

from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.types import TensorType
from flashc.ops.attention import TORCH_HELPER, Attention
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.linalg import onnx_linear

TORCH_HARD_ATTENTION = '''
class HardAttention(MultiHeadAttention):
    """Multi-head attention where each query attends only to its top_k keys.

    Forward: scores outside a query's top_k become -inf before the softmax
    (top_k = 1: a one-hot choice of one key). The choice has no gradient, so
    training is straight-through: the weights are soft + (hard - soft).detach(),
    whose value is the hard weights and whose gradient is the soft softmax's.
    """

    def __init__(self, dim, heads, kv_dim=None, bias=True, top_k=1, causal=False):
        super().__init__(dim, heads, kv_dim=kv_dim, bias=bias, causal=causal)
        self.top_k = top_k

    def forward(self, x, kv=None, key_padding_mask=None):
        kv = x if kv is None else kv
        B, T, C = x.shape
        S = kv.shape[1]
        q, k, v = self.split_heads(x, kv)
        scores = q @ k.transpose(-2, -1) * (C // self.heads) ** -0.5  # [B, h, T, S]
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        if self.causal:
            future = torch.ones(T, S, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        kth = scores.topk(min(self.top_k, S), dim=-1).values[..., -1:]  # each query's k-th best score
        hard = scores.masked_fill(scores < kth, float("-inf")).softmax(-1)
        if self.training:
            soft = scores.softmax(-1)
            hard = soft + (hard - soft).detach()  # straight-through
        y = hard @ v  # [B, h, T, C/h]
        return self.out(y.transpose(1, 2).reshape(B, T, C))
'''


def onnx_causal_keep(tape: Any, q: str, k: str, axis: int) -> str:
    """bool [T, S], true on and below the diagonal: query i sees keys 0..i (top-left aligned)."""
    zero, one = tape.const(0, "int64"), tape.const(1, "int64")

    def length(t: str) -> str:
        return tape.op("Squeeze", [tape.op("Shape", [t], {"start": axis, "end": axis + 1}), tape.const([0], "int64")])

    rows = tape.op("Unsqueeze", [tape.op("Range", [zero, length(q), one]), tape.const([1], "int64")])  # [T, 1]
    cols = tape.op("Range", [zero, length(k), one])  # [S]
    return tape.op("LessOrEqual", [cols, rows])


class ScaledDotProduct(Op):
    """softmax(q k^T * scale + mask) v on [B, H, T, Dh] (or [B, T, D]) queries, keys and values.

    `mask` is bool, true = attend (as torch's bool attn_mask), broadcastable to
    the scores [.., T, S]; `causal` lets query i see keys 0..i; `scale`
    defaults to 1 / sqrt(Dh). Every query must be left some key to attend to.
    """

    family = "attention"
    inputs = (Input("q"), Input("k"), Input("v"), Input("mask", optional=True, dtypes=("bool",)))
    params = {
        "causal": Param(bool, False, doc="query i attends only to keys 0..i"),
        "scale": Param(float, None, doc="multiplies the scores; 1 / sqrt(Dh) when not given"),
    }
    samples = (
        {"q": "float32[2, 2, 5, 4]", "k": "float32[2, 2, 7, 4]", "v": "float32[2, 2, 7, 3]"},
        {"q": "float32[2, 3, 6, 4]", "k": "float32[2, 3, 6, 4]", "v": "float32[2, 3, 6, 4]", "causal": True},
        {"q": "float32[2, 2, 5, 4]", "k": "float32[2, 2, 7, 4]", "v": "float32[2, 2, 7, 4]",
         "mask": "bool[2, 1, 5, 7]", "scale": 0.3},
        {"q": "float32[2, 5, 8]", "k": "float32[2, 7, 8]", "v": "float32[2, 7, 8]", "mask": "bool[5, 7]"},
        {"q": "float32[2, 6, 8]", "k": "float32[2, 6, 8]", "v": "float32[2, 6, 8]", "mask": "bool[2, 6, 6]"},
    )  # a mask with `causal`: tests/test_ops_recurrent_tensor.py (random masks can hide a whole causal row)

    def infer(self, q: TensorType, k: TensorType, v: TensorType, mask: TensorType | None = None) -> TensorType:
        self.require(
            q.rank in (3, 4) and q.is_float and k.rank == v.rank == q.rank and q.dtype == k.dtype == v.dtype,
            f"scaled_dot_product expects float q, k, v of one rank, [B, H, T, Dh] or [B, T, D]; got {q}, {k}, {v}",
        )
        self.require(
            q.shape[:-2] == k.shape[:-2] == v.shape[:-2] and q.shape[-1] == k.shape[-1] and k.shape[-2] == v.shape[-2],
            f"scaled_dot_product: q {q.shape_str()}, k {k.shape_str()}, v {v.shape_str()} do not fit "
            "([.., T, Dh], [.., S, Dh], [.., S, Dv])",
        )
        self.require(is_static(q.shape[-1]), f"scaled_dot_product needs a fixed head size, got {q.shape_str()}")
        scores = q.with_shape(q.shape[:-1] + (k.shape[-2],))
        if mask is not None:
            tail = scores.shape[scores.rank - mask.rank:]
            self.require(
                mask.rank <= scores.rank and all(m in (1, s) for m, s in zip(mask.shape, tail)),
                f"mask {mask.shape_str()} does not broadcast to the scores {scores.shape_str()}",
                "give the mask the scores' axes [.., T, S], or size 1 where it is the same for all",
            )
        return q.with_shape(q.shape[:-1] + (v.shape[-1],))

    def to_torch(self, c: Lowering) -> str:
        q, k, v, mask = c.inputs
        args = [q, k, v]
        if self.causal and mask:
            args.append(f"attn_mask={mask} & torch.ones({q}.shape[-2], {k}.shape[-2], dtype=torch.bool, "
                        f"device={q}.device).tril()")
        elif mask:
            args.append(f"attn_mask={mask}")
        elif self.causal:
            args.append("is_causal=True")
        if self.scale is not None:
            args.append(f"scale={self.scale!r}")
        return f"F.scaled_dot_product_attention({', '.join(args)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        q, k, v, mask = c.inputs
        rank = c.types[0].rank
        if rank == 3:  # one head: [B, T, D] -> [B, 1, T, D]
            one = tape.const([1], "int64")
            q, k, v = (tape.op("Unsqueeze", [t, one]) for t in (q, k, v))
            if mask is not None and c.types[3].rank == 3:
                mask = tape.op("Unsqueeze", [mask, one])
        keep = mask
        if self.causal and (mask is not None or tape.opset < 23):
            tril = onnx_causal_keep(tape, q, k, axis=2)
            keep = tril if keep is None else tape.op("And", [keep, tril])
        scale = self.scale if self.scale is not None else float(c.types[0].shape[-1]) ** -0.5
        if tape.opset >= 23:
            causal = int(self.causal and mask is None)
            y = tape.op("Attention", [q, k, v, keep], {"is_causal": causal, "scale": scale})
        else:
            y = onnx_attend(tape, q, k, v, keep, scale)
        return tape.op("Squeeze", [y, tape.const([1], "int64")]) if rank == 3 else y


def onnx_attend(tape: Any, q: str, k: str, v: str, keep: str | None, scale: float) -> str:
    """softmax(q k^T * scale, masked where `keep` is false) v, from standard ops."""
    scores = tape.op("MatMul", [q, tape.op("Transpose", [k], {"perm": [0, 1, 3, 2]})])
    scores = tape.op("Mul", [scores, tape.const(scale, "float32")])
    if keep is not None:
        scores = tape.op("Where", [keep, scores, tape.const(float("-inf"), "float32")])
    return tape.op("MatMul", [tape.op("Softmax", [scores], {"axis": -1}), v])


class HardAttention(Attention):
    """Multi-head attention whose queries each attend only to their `top_k` best-scoring keys.

    Forward (discrete, the same in training and inference): the scores of a
    query outside its top_k are set to -inf before the softmax; top_k = 1 is a
    one-hot choice of one key. Ties at the k-th score keep every tied key.
    Gradient rule (training): straight-through. The attention weights are
    `soft + (hard - soft).detach()`: their value is the hard weights, their
    gradient that of the ordinary softmax over all (unmasked) keys, so every
    key's score is trained, not only the chosen ones. The values `v` are
    weighted by the hard weights in both directions. Weights and inputs
    (`kv`, `key_padding_mask`, `causal`) are those of `attention`.
    """

    params = {
        "heads": Param(int, doc="number of heads; must divide the model width"),
        "top_k": Param(int, 1, doc="keys each query keeps"),
        "causal": Param(bool, False, doc="each position attends only to itself and earlier ones"),
        "bias": Param(bool, True),
    }
    torch_prelude = (TORCH_HELPER, TORCH_HARD_ATTENTION)
    samples = (
        {"x": "float32[2, 5, 8]", "heads": 2},
        {"x": "float32[2, 6, 8]", "heads": 2, "top_k": 3, "causal": True},
        {"x": "float32[2, 5, 8]", "kv": "float32[2, 7, 6]", "heads": 4, "top_k": 2},
        {"x": "float32[2, 5, 8]", "key_padding_mask": "bool[2, 5]", "heads": 2, "top_k": 9},
    )

    def infer(self, x: TensorType, kv: TensorType | None = None, mask: TensorType | None = None) -> TensorType:
        self.require(self.top_k >= 1, f"hard_attention needs top_k >= 1, got {self.top_k}")
        return super().infer(x, kv, mask)

    def torch_module(self, x: TensorType, kv: TensorType | None = None, mask: TensorType | None = None) -> str:
        d, dkv = self._dims(x, kv)
        return (
            f"HardAttention({d}, {self.heads}, kv_dim={dkv}, bias={self.bias}, "
            f"top_k={self.top_k}, causal={self.causal})"
        )

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, kv, pad = c.inputs
        kv = kv or x
        w = c.weights
        d = int(c.types[0].shape[-1])
        h, dh = self.heads, d // self.heads
        split = tape.const([0, 0, h, dh], "int64")

        def project(name: str, src: str) -> str:
            return onnx_linear(tape, src, w[f"{name}.weight"], w.get(f"{name}.bias"), 3)

        def heads(t: str, perm: list[int]) -> str:
            return tape.op("Transpose", [tape.op("Reshape", [t, split])], {"perm": perm})

        q, k = heads(project("q", x), [0, 2, 1, 3]), heads(project("k", kv), [0, 2, 3, 1])
        scores = tape.op("Mul", [tape.op("MatMul", [q, k]), tape.const(dh**-0.5, "float32")])  # [B, h, T, S]
        minus_inf = tape.const(float("-inf"), "float32")
        keep = None
        if pad is not None:
            keep = tape.op("Not", [tape.op("Unsqueeze", [pad, tape.const([1, 2], "int64")])])  # [B, 1, 1, S]
        if self.causal:
            tril = onnx_causal_keep(tape, x, kv, axis=1)
            keep = tril if keep is None else tape.op("And", [keep, tril])
        if keep is not None:
            scores = tape.op("Where", [keep, scores, minus_inf])
        keys = tape.op("Shape", [scores], {"start": -1})
        count = tape.op("Min", [tape.const([self.top_k], "int64"), keys])
        best, _ = tape.op("TopK", [scores, count], {"axis": -1}, outputs=2)
        kth = tape.op("Slice", [best, tape.const([-1], "int64"), tape.const([2**31 - 1], "int64"),
                                tape.const([-1], "int64")])  # [B, h, T, 1]
        chosen = tape.op("Where", [tape.op("Less", [scores, kth]), minus_inf, scores])
        probs = tape.op("Softmax", [chosen], {"axis": -1})
        y = tape.op("MatMul", [probs, heads(project("v", kv), [0, 2, 1, 3])])  # [B, h, T, dh]
        merged = tape.op("Reshape", [tape.op("Transpose", [y], {"perm": [0, 2, 1, 3]}), tape.const([0, 0, d], "int64")])
        return project("out", merged)
