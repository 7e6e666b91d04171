"""Where attention scores depend on positions: rotary q/k, sliding windows, ALiBi, T5 buckets.

The `attention` op (ops/attention.py) owns the weights and the softmax; this
module holds what both of its backends need to place queries and keys in a
sequence: the generated-PyTorch helpers (a standalone file, so they are
source text) and the ONNX builders. Queries sit at positions
``offset .. offset + T - 1`` and keys at ``0 .. S - 1``; ``offset`` is zero
today and is the hook a KV cache uses to shift the queries by the cached
length. Nothing here imports torch or onnx at module level.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

# The most negative float32: masked scores become this rather than -inf, so a
# row whose keys are all masked stays finite (its weights are zeroed after the softmax).
MASKED = float(np.finfo(np.float32).min)


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi's per-head slopes (Press et al. 2022): 2^(-8/n), its powers, for n = heads.

    For a head count that is not a power of two, the slopes of the largest power of
    two below it, then every other slope of twice that power, as in the paper's code.
    """

    low = 1 << (heads.bit_length() - 1)  # the largest power of two <= heads
    if low == heads:
        start = 2 ** (-8 / heads)  # the paper's 2 ** -(2 ** -(log2(n) - 3))
        return [start ** (i + 1) for i in range(heads)]
    return alibi_slopes(low) + alibi_slopes(2 * low)[0::2][: heads - low]


def rope_inv_freq(theta: float, dim: int) -> np.ndarray:
    """theta^(-2i/dim) for i < dim/2, in float32 the way LLaMA computes it (1 / theta ** (2i / dim))."""
    exponents = np.arange(0, dim, 2).astype(np.float32) / np.float32(dim)
    return (np.float32(1.0) / (np.float32(theta) ** exponents)).astype(np.float32)


def t5_max_exact(buckets: int, bidirectional: bool) -> int:
    """Distances below this get a bucket each; T5 halves the buckets between directions first."""
    return (buckets // 2 if bidirectional else buckets) // 2


TORCH_ROTARY = '''
def rotary(x, positions, theta, dim, interleaved):
    """Rotate the first `dim` features of each head [.., T, Dh] by position * theta^(-2i/dim) (RoPE).

    Half-split pairs feature i with i + dim/2 (LLaMA, GPT-NeoX); interleaved pairs 2i with 2i + 1 (GPT-J).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(x.device, torch.float) / dim))
    angles = positions.float()[:, None] * inv_freq  # [T, dim / 2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    rot, rest = x[..., :dim], x[..., dim:]
    if interleaved:
        a, b = rot[..., 0::2], rot[..., 1::2]
        rot = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    else:
        a, b = rot[..., : dim // 2], rot[..., dim // 2 :]
        rot = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    return torch.cat((rot, rest), dim=-1)
'''

TORCH_T5_BUCKETS = '''
def t5_buckets(relative, bidirectional, buckets, max_distance):
    """T5's bucket of each key-minus-query distance: one per small distance, log-spaced up to max_distance."""
    out = 0
    if bidirectional:
        buckets //= 2
        out = (relative > 0).to(torch.long) * buckets
        relative = relative.abs()
    else:
        relative = -torch.min(relative, torch.zeros_like(relative))
    exact = buckets // 2
    log_span = torch.tensor(max_distance / exact, dtype=torch.float64).log().item()  # math.log(max_distance / exact)
    far = exact + (torch.log(relative.float() / exact) / log_span * (buckets - exact)).to(torch.long)
    far = torch.min(far, torch.full_like(far, buckets - 1))
    return out + torch.where(relative < exact, relative, far)
'''

TORCH_POSITIONAL = '''
class PositionalAttention(MultiHeadAttention):
    """Attention whose scores depend on positions: rotary q/k, a sliding causal window, ALiBi, T5's buckets.

    Queries sit at positions offset .. offset + T - 1 (offset: tokens a cache already holds), keys at 0 .. S - 1.
    """

    def __init__(self, dim, heads, *, rope=None, rope_dim=None, rope_style="half", window=None, alibi=False,
                 relative_buckets=None, max_distance=128, **kw):
        super().__init__(dim, heads, **kw)
        self.rope, self.rope_dim, self.interleaved = rope, rope_dim or self.head_dim, rope_style == "interleaved"
        self.window, self.max_distance = window, max_distance
        self.slopes = torch.tensor(alibi_slopes(heads)) if alibi else None
        if relative_buckets:
            self.relative_bias = nn.Parameter(torch.empty(relative_buckets, heads))  # [buckets, heads], as T5

    def position_bias(self, qpos, kpos):
        """Added to the scores: [heads, T, S] (ALiBi and/or T5 relative bias), or None."""
        bias = None
        if self.slopes is not None:
            distance = (qpos[:, None] - kpos).abs().float()
            bias = -self.slopes.to(distance.device)[:, None, None] * distance
        if hasattr(self, "relative_bias"):
            buckets = t5_buckets(kpos - qpos[:, None], not self.causal, self.relative_bias.shape[0],
                                 self.max_distance)
            table = self.relative_bias[buckets].permute(2, 0, 1)
            bias = table if bias is None else bias + table
        return bias

    def forward(self, x, kv=None, key_padding_mask=None, offset=0, past_key=None, past_value=None):
        """With past_key/past_value [B, kv_heads, P, Dh] (a KV cache): queries at P .. P + T - 1, and the
        keys/values of all P + T tokens returned beside the output, the next step's cache."""
        kv = x if kv is None else kv
        B, T, _ = x.shape
        q, k, v = self.split_heads(x, kv)  # [B, heads, T, Dh], [B, kv_heads, S, Dh]
        offset = offset if past_key is None else past_key.shape[2]
        qpos = torch.arange(T, device=x.device) + offset
        kpos = torch.arange(kv.shape[1] + (0 if past_key is None else offset), device=x.device)
        if self.rope is not None:
            q = rotary(q, qpos, self.rope, self.rope_dim, self.interleaved)
            k = rotary(k, kpos[-k.shape[2]:], self.rope, self.rope_dim, self.interleaved)
        if past_key is not None:  # cached keys were rotated at their own positions
            k, v = torch.cat((past_key, k), 2), torch.cat((past_value, v), 2)
        keep = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        bias = self.position_bias(qpos, kpos)
        plain_causal = self.causal and keep is None and bias is None and not self.window and offset == 0
        if self.causal and not plain_causal:
            seen = kpos <= qpos[:, None]
            if self.window:  # Mistral: the last `window` positions, itself included
                seen = seen & (kpos > qpos[:, None] - self.window)
            keep = seen if keep is None else keep & seen
        mask = keep if bias is None else bias if keep is None else bias.masked_fill(~keep, float("-inf"))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=plain_causal, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=self.kv_heads != self.heads,
        )
        y = self.out(y.transpose(1, 2).reshape(B, T, -1))
        return y if past_key is None else (y, k, v)
'''

TORCH_ALIBI = "\n" + inspect.getsource(alibi_slopes)


# --- ONNX ----------------------------------------------------------------------------------


def onnx_length(tape: Any, t: str, axis: int = 1) -> str:
    """The size of ``t`` along ``axis`` as an int64 scalar."""
    return tape.op("Squeeze", [tape.op("Shape", [t], {"start": axis, "end": axis + 1}), tape.const([0], "int64")])


def onnx_positions(tape: Any, x: str, kv: str | None, offset: str | None = None) -> tuple[str, str]:
    """int64 positions of the queries (offset + 0 .. T-1) and of the keys (0 .. S-1).

    ``offset`` (an int64 scalar value) is where a KV cache will shift the queries; None is 0.
    """
    zero, one = tape.const(0, "int64"), tape.const(1, "int64")
    base = tape.op("Range", [zero, onnx_length(tape, x), one])
    qpos = base if offset is None else tape.op("Add", [base, offset])
    kpos = base if kv is None else tape.op("Range", [zero, onnx_length(tape, kv), one])
    return qpos, kpos


def onnx_rope_tables(tape: Any, pos: str, theta: float, dim: int) -> tuple[str, str]:
    """cos and sin of position * theta^(-2i/dim): [L, dim / 2] float32."""
    angles = tape.op("Mul", [tape.op("Unsqueeze", [tape.op("Cast", [pos], {"to": 1}), tape.const([1], "int64")]),
                             tape.const(rope_inv_freq(theta, dim), "float32")])
    return tape.op("Cos", [angles]), tape.op("Sin", [angles])


def onnx_rope(tape: Any, t: str, tables: tuple[str, str], heads: int, head_dim: int, dim: int,
              interleaved: bool) -> str:
    """``t`` [B, L, heads * head_dim] with the first ``dim`` features of every head rotated.

    Opset 23 has `RotaryEmbedding` (its caches [B, L, dim / 2]); before it, the
    rotation is written out with Slice, Mul and Concat.
    """
    cos, sin = tables
    if tape.opset >= 23:
        shape = tape.op("Concat", [tape.op("Shape", [t], {"start": 0, "end": 1}), tape.op("Shape", [cos])], {"axis": 0})
        cos, sin = tape.op("Expand", [cos, shape]), tape.op("Expand", [sin, shape])
        attrs = {"num_heads": heads, "interleaved": int(interleaved)}
        if dim < head_dim:
            attrs["rotary_embedding_dim"] = dim
        return tape.op("RotaryEmbedding", [t, cos, sin], attrs)

    def cut(v: str, start: int, end: int, axis: int) -> str:
        return tape.op("Slice", [v, tape.const([start], "int64"), tape.const([end], "int64"), tape.const([axis], "int64")])

    def turn(a: str, b: str, c: str, s: str) -> tuple[str, str]:
        first = tape.op("Sub", [tape.op("Mul", [a, c]), tape.op("Mul", [b, s])])
        second = tape.op("Add", [tape.op("Mul", [b, c]), tape.op("Mul", [a, s])])
        return first, second

    split = tape.op("Reshape", [t, tape.const([0, 0, heads, head_dim], "int64")])  # [B, L, n, Dh]
    rot = cut(split, 0, dim, 3) if dim < head_dim else split
    c, s = (tape.op("Unsqueeze", [v, tape.const([1], "int64")]) for v in (cos, sin))  # [L, 1, dim / 2]
    if interleaved:  # pairs (2i, 2i + 1): [B, L, n, dim / 2, 2]
        pairs = tape.op("Reshape", [rot, tape.const([0, 0, 0, dim // 2, 2], "int64")])
        c, s = (tape.op("Unsqueeze", [v, tape.const([3], "int64")]) for v in (c, s))  # [L, 1, dim / 2, 1]
        parts = turn(cut(pairs, 0, 1, 4), cut(pairs, 1, 2, 4), c, s)
        rot = tape.op("Reshape", [tape.op("Concat", list(parts), {"axis": 4}), tape.const([0, 0, 0, dim], "int64")])
    else:  # pairs (i, i + dim / 2)
        rot = tape.op("Concat", list(turn(cut(rot, 0, dim // 2, 3), cut(rot, dim // 2, dim, 3), c, s)), {"axis": 3})
    if dim < head_dim:
        rot = tape.op("Concat", [rot, cut(split, dim, head_dim, 3)], {"axis": 3})
    return tape.op("Reshape", [rot, tape.const([0, 0, heads * head_dim], "int64")])


def onnx_position_keep(tape: Any, qpos: str, kpos: str, window: int | None) -> str:
    """bool [T, S]: key j is visible to query i when j <= i (and i - j < window)."""
    rows = tape.op("Unsqueeze", [qpos, tape.const([1], "int64")])  # [T, 1]
    keep = tape.op("LessOrEqual", [kpos, rows])
    if window:
        start = tape.op("Sub", [rows, tape.const(window, "int64")])
        keep = tape.op("And", [keep, tape.op("Greater", [kpos, start])])
    return keep


def onnx_alibi(tape: Any, qpos: str, kpos: str, heads: int) -> str:
    """-slope_h * |i - j|: float [heads, T, S]."""
    rows = tape.op("Unsqueeze", [qpos, tape.const([1], "int64")])
    distance = tape.op("Cast", [tape.op("Abs", [tape.op("Sub", [rows, kpos])])], {"to": 1})
    slopes = -np.asarray(alibi_slopes(heads), dtype=np.float32).reshape(heads, 1, 1)
    return tape.op("Mul", [tape.const(slopes, "float32"), distance])


def onnx_t5_bias(tape: Any, qpos: str, kpos: str, table: str, bidirectional: bool, buckets: int,
                 max_distance: int) -> str:
    """T5's relative position bias: the table [buckets, heads] read at each distance's bucket: [heads, T, S]."""
    relative = tape.op("Sub", [kpos, tape.op("Unsqueeze", [qpos, tape.const([1], "int64")])])  # key - query
    zero = tape.const(0, "int64")
    half = buckets // 2 if bidirectional else buckets
    base = None
    if bidirectional:
        base = tape.op("Mul", [tape.op("Cast", [tape.op("Greater", [relative, zero])], {"to": 7}),
                               tape.const(half, "int64")])
        distance = tape.op("Abs", [relative])
    else:
        distance = tape.op("Neg", [tape.op("Min", [relative, zero])])
    exact = t5_max_exact(buckets, bidirectional)
    # log of a distance below `exact` is never used; clamping keeps it finite
    ratio = tape.op("Div", [tape.op("Cast", [tape.op("Max", [distance, tape.const(exact, "int64")])], {"to": 1}),
                            tape.const(float(exact), "float32")])
    scaled = tape.op("Mul", [tape.op("Div", [tape.op("Log", [ratio]), tape.const(math.log(max_distance / exact), "float32")]),
                             tape.const(float(half - exact), "float32")])
    far = tape.op("Add", [tape.const(exact, "int64"), tape.op("Cast", [scaled], {"to": 7})])
    far = tape.op("Min", [far, tape.const(half - 1, "int64")])
    bucket = tape.op("Where", [tape.op("Less", [distance, tape.const(exact, "int64")]), distance, far])
    if base is not None:
        bucket = tape.op("Add", [base, bucket])
    values = tape.op("Gather", [table, bucket], {"axis": 0})  # [T, S, heads]
    return tape.op("Transpose", [values], {"perm": [2, 0, 1]})
