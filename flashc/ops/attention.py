"""Multi-head scaled dot-product attention: self, causal, padded and cross.

softmax(Q K^T / sqrt(d_head)) V per head, heads concatenated and projected
(the seed's section 1). Queries come from `x`; keys and values from `kv` when
given (cross-attention), else from `x` (self-attention).
"""

from __future__ import annotations

import math
from typing import Any

from flashc.ir.dims import is_static
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType
from flashc.ops.attention_positions import (
    MASKED,
    TORCH_ALIBI,
    TORCH_POSITIONAL,
    TORCH_ROTARY,
    TORCH_T5_BUCKETS,
    onnx_alibi,
    onnx_length,
    onnx_position_keep,
    onnx_positions,
    onnx_rope,
    onnx_rope_tables,
    onnx_t5_bias,
    t5_max_exact,
)
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.linalg import onnx_linear

TORCH_HELPER = '''
class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with q, k, v and out projections.

    kv_heads < heads shares each key/value head among heads // kv_heads query heads
    (grouped-query attention; kv_heads = 1 is multi-query attention).
    """

    def __init__(self, dim, heads, kv_dim=None, bias=True, causal=False, dropout=0.0, kv_heads=None,
                 head_dim=None, out_bias=None, scale=None, k_bias=None):
        super().__init__()
        kv_dim = kv_dim or dim
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads or heads, head_dim or dim // heads
        self.causal, self.dropout, self.scale = causal, dropout, scale
        inner, kv_inner = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.q = nn.Linear(dim, inner, bias=bias)
        self.k = nn.Linear(kv_dim, kv_inner, bias=bias if k_bias is None else k_bias)
        self.v = nn.Linear(kv_dim, kv_inner, bias=bias)
        self.out = nn.Linear(inner, dim, bias=bias if out_bias is None else out_bias)

    def split_heads(self, x, kv):
        """Project queries from x, keys and values from kv: [B, heads, T, Dh] and [B, kv_heads, S, Dh]."""
        B, T, _ = x.shape
        S, dh = kv.shape[1], self.head_dim
        q = self.q(x).view(B, T, self.heads, dh).transpose(1, 2)
        k = self.k(kv).view(B, S, self.kv_heads, dh).transpose(1, 2)
        v = self.v(kv).view(B, S, self.kv_heads, dh).transpose(1, 2)
        return q, k, v

    def forward(self, x, kv=None, key_padding_mask=None, past_key=None, past_value=None):
        if past_key is not None:
            return self.cached(x, past_key, past_value)
        kv = x if kv is None else kv
        B, T, _ = x.shape
        S = kv.shape[1]
        q, k, v = self.split_heads(x, kv)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        if self.causal and mask is not None:
            mask = mask & torch.ones(T, S, dtype=torch.bool, device=x.device).tril()
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=self.kv_heads != self.heads,
        )
        return self.out(y.transpose(1, 2).reshape(B, T, -1))

    def cached(self, x, past_key, past_value):
        """Self-attention of T new tokens after P cached ones (past_key/past_value [B, kv_heads, P, Dh]).

        Returns the output and the keys/values of all P + T tokens, the next step's cache.
        """
        B, T, _ = x.shape
        P = past_key.shape[2]
        q, k, v = self.split_heads(x, x)
        k, v = torch.cat((past_key, k), 2), torch.cat((past_value, v), 2)
        mask = None
        if self.causal and T > 1:  # new token i sees the cache and new tokens up to itself
            mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(P)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                           enable_gqa=self.kv_heads != self.heads)
        return self.out(y.transpose(1, 2).reshape(B, T, -1)), k, v

    def cross_keys(self, kv):
        """Keys and values of a whole source [B, kv_heads, S, Dh]: an encoder-decoder computes them once."""
        B, S, _ = kv.shape
        k = self.k(kv).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(kv).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        return k, v

    def cached_cross(self, x, key, value, key_padding_mask=None):
        """Cross-attention of x to keys/values from cross_keys (a cached decoder's step)."""
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, key, value, attn_mask=mask, scale=self.scale,
                                           enable_gqa=self.kv_heads != self.heads)
        return self.out(y.transpose(1, 2).reshape(B, T, -1))
'''


class _Preludes:
    """`attention`'s torch helpers: on the class, all it may emit (the names a generated file can
    define); on one layer, only those it uses, so a plain layer's generated file stays short."""

    ALL = (TORCH_HELPER, TORCH_ALIBI, TORCH_ROTARY, TORCH_T5_BUCKETS, TORCH_POSITIONAL)

    def __get__(self, op: Attention | None, owner: type) -> tuple[str, ...]:
        return self.ALL if op is None or op.positional else (TORCH_HELPER,)


class Attention(Op):
    """Multi-head attention; `causal` masks the future, `key_padding_mask` (true = pad) hides keys.

    Grouped-query attention: `kv_heads` key/value heads, each shared by
    heads / kv_heads query heads (`kv_heads = 1`: multi-query). Positions:
    `rope = theta` rotates queries and keys (the first `rope_dim` features of
    each head; `rope_style` "half" pairs i with i + rope_dim/2 as LLaMA and
    GPT-NeoX, "interleaved" pairs 2i with 2i + 1 as GPT-J); `window = w` with
    `causal` lets a query see only the last w positions, itself included
    (Mistral); `alibi` adds -slope_h * |i - j| (the paper's slopes);
    `relative_buckets = n` adds T5's bucketed relative position bias, a weight
    `relative_bias` [n, heads], bidirectional unless `causal` (T5 does not
    scale: write `scale = 1.0`). Weights: `q`, `k`, `v`, `out` (LLaMA's q_proj,
    k_proj, v_proj, o_proj); `qkv_bias` / `out_bias` override `bias` for the
    input and output projections (Qwen2: `qkv_bias, out_bias = false`), `k_bias`
    for the keys alone (Whisper: `k_bias = false`; a key bias only shifts every
    score of a query equally, so softmax ignores it).
    """

    family = "attention"
    inputs = (
        Input("x"),
        Input("kv", optional=True),
        Input("key_padding_mask", optional=True, dtypes=("bool",)),
    )
    params = {
        "heads": Param(int, doc="number of heads; must divide the width unless head_dim is given", minimum=1),
        "causal": Param(bool, False, doc="each position attends only to itself and earlier ones"),
        "bias": Param(bool, True),
        "dropout": Param(float, 0.0, doc="dropout on the attention weights (training only)"),
        "kv_heads": Param(int, None, doc="key/value heads (grouped-query); must divide heads", minimum=1),
        "head_dim": Param(int, None, doc="features per head; width / heads when not given", minimum=1),
        "qkv_bias": Param(bool, None, doc="bias on the q, k, v projections; `bias` when not given"),
        "out_bias": Param(bool, None, doc="bias on the output projection; `bias` when not given"),
        "k_bias": Param(bool, None, doc="bias on the k projection; `qkv_bias` (or `bias`) when not given"),
        "scale": Param(float, None, doc="multiplies the scores; 1 / sqrt(head_dim) when not given"),
        "rope": Param(float, None, doc="rotary position embeddings with this base theta (LLaMA: 10000.0)"),
        "rope_dim": Param(int, None, doc="rotate only the first rope_dim features of each head", minimum=2),
        "rope_style": Param(str, "half", choices=("half", "interleaved"), doc="half-split (LLaMA) or GPT-J's pairs"),
        "window": Param(int, None, doc="sliding window: with causal, see only the last `window` positions", minimum=1),
        "alibi": Param(bool, False, doc="ALiBi: add -slope * distance to the scores"),
        "relative_buckets": Param(int, None, doc="T5 relative position bias with this many buckets", minimum=2),
        "max_distance": Param(int, 128, doc="T5: distances from here on share the last bucket", minimum=1),
    }
    tieable = ("relative_bias",)
    torch_prelude = _Preludes()
    # (call, what it is) on x: float32[B, T, 512], memory: float32[B, S, 512], pad: bool[B, T];
    # rendered in docs/language.md, and each one is built by a test.
    examples = (
        ("x |> attention(8, causal)", "GPT-2: 8 heads of 64, the future masked"),
        ("x |> attention(8, kv_heads = 2, causal, bias = false)", "grouped-query: 2 key/value heads (1: multi-query)"),
        ("x |> attention(8, head_dim = 128)", "q, k, v project to heads * head_dim = 1024 features"),
        ("x |> attention(8, qkv_bias, out_bias = false)", "Qwen2: biases on q, k, v, none on the output"),
        ("attention(x, memory, heads = 8, k_bias = false)", "Whisper: biases on q, v and out, none on k"),
        ("x |> attention(8, kv_heads = 2, rope = 10000.0, causal, bias = false)", "LLaMA: rotary q and k"),
        ("x |> attention(8, rope = 10000.0, rope_dim = 16, causal)", "GPT-NeoX: rotate the first 16 of 64 features"),
        ('x |> attention(8, rope = 10000.0, rope_dim = 16, rope_style = "interleaved", causal)',
         "GPT-J: pairs (2i, 2i + 1) instead of (i, i + 8)"),
        ("x |> attention(8, kv_heads = 2, rope = 10000.0, causal, window = 4096)",
         "Mistral: each query sees the last 4096 positions"),
        ("x |> attention(8, alibi, causal)", "ALiBi: -slope_h * (i - j) added to the scores"),
        ("x |> attention(8, relative_buckets = 32, max_distance = 128, scale = 1.0, bias = false)",
         "T5 encoder: bidirectional buckets, unscaled scores"),
        ("x |> attention(8, relative_buckets = 32, scale = 1.0, bias = false, causal)", "T5 decoder: causal buckets"),
        ("attention(x, memory, heads = 8, kv_heads = 2)", "cross-attention: keys and values from memory"),
        ("attention(x, heads = 8, key_padding_mask = pad)", "padding (true) hidden from every query"),
    )
    samples = (
        {"x": "float32[2, 5, 8]", "heads": 2},
        {"x": "float32[2, 5, 8]", "heads": 4, "causal": True},
        {"x": "float32[2, 5, 8]", "kv": "float32[2, 7, 6]", "heads": 2},
        {"x": "float32[2, 5, 8]", "key_padding_mask": "bool[2, 5]", "heads": 2, "causal": True},
        {"x": "float32[2, 6, 8]", "heads": 4, "kv_heads": 2, "causal": True},
        {"x": "float32[2, 5, 8]", "kv": "float32[2, 7, 6]", "key_padding_mask": "bool[2, 7]", "heads": 4,
         "kv_heads": 1, "head_dim": 3, "qkv_bias": True, "out_bias": False},
        {"x": "float32[2, 6, 16]", "heads": 4, "kv_heads": 2, "rope": 10000.0, "causal": True, "bias": False},
        {"x": "float32[2, 6, 16]", "heads": 2, "rope": 500.0, "rope_dim": 4, "rope_style": "interleaved",
         "key_padding_mask": "bool[2, 6]"},
        {"x": "float32[2, 6, 16]", "heads": 2, "kv_heads": 1, "rope": 10000.0, "rope_dim": 6, "causal": True},
        {"x": "float32[2, 7, 8]", "heads": 2, "kv_heads": 1, "causal": True, "window": 3},
        {"x": "float32[2, 6, 6]", "heads": 3, "alibi": True, "causal": True},
        {"x": "float32[2, 5, 8]", "heads": 4, "kv_heads": 2, "alibi": True, "key_padding_mask": "bool[2, 5]"},
        {"x": "float32[2, 9, 8]", "heads": 2, "relative_buckets": 8, "max_distance": 6, "scale": 1.0, "bias": False},
        {"x": "float32[2, 9, 8]", "heads": 2, "relative_buckets": 6, "max_distance": 5, "causal": True,
         "window": 4, "scale": 1.0},
        {"x": "float32[2, 5, 8]", "kv": "float32[2, 7, 6]", "heads": 2, "k_bias": False},
        {"x": "float32[2, 6, 8]", "heads": 2, "causal": True, "window": 3, "k_bias": False},
    )

    def setting(self, name: str) -> Any:
        """A setting, or its default for subclasses (hard_attention) that do not declare it."""
        return self.attrs.get(name, Attention.params[name].default)

    @property
    def positional(self) -> bool:
        """Whether scores depend on positions beyond a plain causal mask (the PositionalAttention helper)."""
        return any(self.setting(k) for k in ("rope", "window", "alibi", "relative_buckets"))

    def _bias_switches(self) -> tuple[bool, bool]:
        """Whether the q/k/v projections and the output projection have a bias."""
        qkv, out = self.setting("qkv_bias"), self.setting("out_bias")
        return (self.bias if qkv is None else qkv), (self.bias if out is None else out)

    def _k_bias(self) -> bool:
        """Whether the k projection has a bias (Whisper's has none while q and v do)."""
        k = self.setting("k_bias")
        return self._bias_switches()[0] if k is None else k

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
        if self.setting("head_dim") is None:
            self.require(d % self.heads == 0, f"attention: heads={self.heads} must divide the width {d}",
                         "or give `head_dim` (then q, k, v project to heads * head_dim features)")
        return d, dkv

    def _heads(self, d: int) -> tuple[int, int, int]:
        """(query heads, key/value heads, features per head)."""
        kv_heads = self.setting("kv_heads") or self.heads
        return self.heads, kv_heads, self.setting("head_dim") or d // self.heads

    def _check_variants(self, d: int) -> None:
        """The settings fit together: groups, rotary size, window, T5 buckets."""
        heads, kv_heads, head_dim = self._heads(d)
        self.require(heads % kv_heads == 0, f"attention: kv_heads={kv_heads} must divide heads={heads}",
                     "each key/value head serves heads / kv_heads query heads")
        rope, rope_dim = self.setting("rope"), self.setting("rope_dim")
        if rope is None:
            self.require(rope_dim is None, "attention: `rope_dim` needs rotary embeddings", "add `rope = 10000.0`")
            self.require(self.setting("rope_style") == "half", "attention: `rope_style` needs rotary embeddings",
                         "add `rope = 10000.0`")
        else:
            self.require(rope > 0, f"attention: rope (theta) must be positive, got {rope}")
            rd = rope_dim or head_dim
            self.require(rd % 2 == 0 and rd <= head_dim,
                         f"attention: the rotary dimension must be even and at most head_dim={head_dim}, got {rd}")
        self.require(self.setting("window") is None or self.causal, "attention: `window` needs `causal`",
                     "a sliding window looks back from each query: add `causal`")
        buckets, max_distance = self.setting("relative_buckets"), self.setting("max_distance")
        if buckets is None:
            self.require(max_distance == 128, "attention: `max_distance` needs `relative_buckets`")
        else:
            exact = t5_max_exact(buckets, not self.causal)
            least = 2 if self.causal else 4  # without causal, half the buckets look each way
            self.require(exact >= 1, f"attention: relative_buckets={buckets} is too few; use at least {least}")
            self.require(max_distance > exact, f"attention: max_distance={max_distance} must exceed the "
                                               f"{exact} exactly-bucketed distances")

    def weights(self, x: TensorType, kv: TensorType | None = None, mask: TensorType | None = None) -> dict[str, WeightSpec]:
        d, dkv = self._dims(x, kv)
        heads, kv_heads, head_dim = self._heads(d)
        qkv_bias, out_bias = self._bias_switches()
        inner, kv_inner = heads * head_dim, kv_heads * head_dim
        w: dict[str, WeightSpec] = {}
        for proj, rows, fan_in, bias in (("q", inner, d, qkv_bias), ("k", kv_inner, dkv, self._k_bias()),
                                         ("v", kv_inner, dkv, qkv_bias), ("out", d, inner, out_bias)):
            bound = 1 / math.sqrt(fan_in)
            w[f"{proj}.weight"] = WeightSpec((rows, fan_in), ("uniform", bound))
            if bias:
                w[f"{proj}.bias"] = WeightSpec((rows,), ("uniform", bound))
        if self.setting("relative_buckets"):
            w["relative_bias"] = WeightSpec((self.setting("relative_buckets"), heads), ("normal", d**-0.5))
        return w

    def infer(self, x: TensorType, kv: TensorType | None = None, mask: TensorType | None = None) -> TensorType:
        d, _ = self._dims(x, kv)
        self._check_variants(d)
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
        qkv_bias, out_bias = self._bias_switches()
        args = [str(d), str(self.heads), f"kv_dim={dkv}", f"bias={qkv_bias}", f"causal={self.causal}",
                f"dropout={self.dropout!r}"]
        if out_bias != qkv_bias:
            args.append(f"out_bias={out_bias}")
        if self._k_bias() != qkv_bias:
            args.append(f"k_bias={self._k_bias()}")
        optional = ["kv_heads", "head_dim", "scale"]
        if self.positional:
            optional += ["rope", "rope_dim", "rope_style", "window", "alibi", "relative_buckets", "max_distance"]
        args += [f"{k}={self.setting(k)!r}" for k in optional if self.setting(k) != Attention.params[k].default]
        return f"{'PositionalAttention' if self.positional else 'MultiHeadAttention'}({', '.join(args)})"

    def to_torch(self, c: Lowering) -> str:
        x, kv, mask = c.inputs
        args = [x] + ([f"kv={kv}"] if kv else []) + ([f"key_padding_mask={mask}"] if mask else [])
        return f"{c.module}({', '.join(args)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, kv, pad = c.inputs
        return self._onnx(tape, c, x, kv, pad, None)[0]

    def _onnx(self, tape: Any, c: Lowering, x: str, kv: str | None, pad: str | None,
              past: tuple[str, str] | None) -> list[str]:
        """The output, and with ``past`` (cached keys, values [B, kv_heads, P, Dh]) the present ones."""
        keys = kv or x
        w = c.weights
        heads, kv_heads, head_dim = self._heads(int(c.types[0].shape[-1]))

        def project(name: str, src: str) -> str:
            return onnx_linear(tape, src, w[f"{name}.weight"], w.get(f"{name}.bias"), 3)

        q, k, v = project("q", x), project("k", keys), project("v", keys)
        offset = None if past is None else onnx_length(tape, past[0], 2)  # P: tokens the cache holds
        qpos = kpos = None
        if self.positional or past is not None:
            qpos, kpos = onnx_positions(tape, x, kv, offset)
        rope = self.setting("rope")
        if rope is not None:
            dim, interleaved = self.setting("rope_dim") or head_dim, self.setting("rope_style") == "interleaved"
            q_tables = onnx_rope_tables(tape, qpos, rope, dim)
            k_tables = q_tables if kv is None else onnx_rope_tables(tape, kpos, rope, dim)  # new keys: at qpos
            q = onnx_rope(tape, q, q_tables, heads, head_dim, dim, interleaved)
            k = onnx_rope(tape, k, k_tables, kv_heads, head_dim, dim, interleaved)
        if past is not None:  # keys of the cache and the new tokens: 0 .. P + T - 1
            kpos = tape.op("Range", [tape.const(0, "int64"), tape.op("Add", [offset, onnx_length(tape, x)]),
                                     tape.const(1, "int64")])
        keep = None
        if pad is not None:
            keep = tape.op("Not", [tape.op("Unsqueeze", [pad, tape.const([1, 2], "int64")])])  # [B, 1, 1, S]
        bias = self._onnx_bias(tape, qpos, kpos, w)
        plain_causal = self.causal and keep is None and bias is None and not self.setting("window") and past is None
        if self.causal and (not plain_causal or tape.opset < 23):
            if qpos is None:
                qpos, kpos = onnx_positions(tape, x, kv)
            seen = onnx_position_keep(tape, qpos, kpos, self.setting("window"))  # [T, S]
            keep = seen if keep is None else tape.op("And", [keep, seen])
        scale = self.setting("scale")
        scale = head_dim**-0.5 if scale is None else scale
        if tape.opset >= 23:
            attrs = {"q_num_heads": heads, "kv_num_heads": kv_heads, "is_causal": int(plain_causal), "scale": scale}
            mask = self._fused_mask(tape, x, keep, bias, pad is not None)
            if past is None:
                return [project("out", tape.op("Attention", [q, k, v, mask], attrs))]
            y, present_k, present_v = tape.op("Attention", [q, k, v, mask, *past], attrs, outputs=3)
            return [project("out", y), present_k, present_v]
        if past is None:
            return [project("out", self._decomposed(tape, q, k, v, keep, bias, scale, heads, kv_heads, head_dim))]
        split = tape.const([0, 0, kv_heads, head_dim], "int64")
        present_k, present_v = (
            tape.op("Concat", [cached, tape.op("Transpose", [tape.op("Reshape", [new, split])], {"perm": [0, 2, 1, 3]})],
                    {"axis": 2})
            for cached, new in zip(past, (k, v))
        )  # [B, kv_heads, P + T, Dh]
        y = self._decomposed(tape, q, present_k, present_v, keep, bias, scale, heads, kv_heads, head_dim, split=False)
        return [project("out", y), present_k, present_v]

    def _onnx_bias(self, tape: Any, qpos: str | None, kpos: str | None, w: dict[str, str]) -> str | None:
        """ALiBi and T5's relative bias, summed: float [heads, T, S], or None."""
        bias = None
        if self.setting("alibi"):
            bias = onnx_alibi(tape, qpos, kpos, self.heads)
        if self.setting("relative_buckets"):
            table = onnx_t5_bias(tape, qpos, kpos, w["relative_bias"], not self.causal,
                                 self.setting("relative_buckets"), self.setting("max_distance"))
            bias = table if bias is None else tape.op("Add", [bias, table])
        return bias

    def _fused_mask(self, tape: Any, x: str, keep: str | None, bias: str | None, padded: bool) -> str | None:
        """opset 23 `Attention`'s attn_mask: bool `keep`, or `bias` with masked scores at MASKED; 4-d.

        onnxruntime wants [B or 1, heads or 1, T, S]: a padding mask alone [B, 1, 1, S] is
        expanded over the queries, the others get their missing leading axes.
        """
        if bias is None and keep is None:
            return None
        if bias is None and padded and not self.causal:  # [B, 1, 1, S] -> [B, 1, T, S]
            batch = tape.op("Shape", [keep], {"start": 0, "end": 1})
            rows = tape.op("Shape", [x], {"start": 1, "end": 2})
            cols = tape.op("Shape", [keep], {"start": 3, "end": 4})
            keep = tape.op("Expand", [keep, tape.op("Concat", [batch, tape.const([1], "int64"), rows, cols], {"axis": 0})])
        mask = keep if bias is None else bias if keep is None else tape.op("Where", [keep, bias, tape.const(MASKED, "float32")])
        rank = max(3 if bias is not None else 0, 4 if padded else (2 if keep is not None else 0))
        if rank < 4:
            mask = tape.op("Unsqueeze", [mask, tape.const(list(range(4 - rank)), "int64")])
        return mask

    def _decomposed(self, tape: Any, q: str, k: str, v: str, keep: str | None, bias: str | None, scale: float,
                    heads: int, kv_heads: int, head_dim: int, split: bool = True) -> str:
        """Standard ops for runtimes before opset 23: split heads, masked softmax, merge.

        With kv_heads < heads the queries of a group are stacked as [B, kv_heads, groups * T, Dh],
        so every group reads its key/value head without copying it. ``split = False``: k and v
        come already split as [B, kv_heads, S, Dh] (a KV cache's present keys and values).
        """
        if not split:
            k = tape.op("Transpose", [k], {"perm": [0, 1, 3, 2]})  # [B, kv_heads, Dh, S]
        grouped = heads != kv_heads

        def heads_of(t: str, n: int, perm: list[int], given: bool = False) -> str:
            if given:  # already [B, n, S, Dh] (k: [B, n, Dh, S])
                return t
            return tape.op("Transpose", [tape.op("Reshape", [t, tape.const([0, 0, n, head_dim], "int64")])], {"perm": perm})

        def regroup(t: str, n: int) -> str:  # [B, n1, X, Y] -> [B, n, -1, Y]
            return tape.op("Reshape", [t, tape.const([0, n, -1, 0], "int64")]) if grouped else t

        qh = regroup(heads_of(q, heads, [0, 2, 1, 3]), kv_heads)  # [B, kv_heads, groups * T, Dh]
        scores = regroup(tape.op("MatMul", [qh, heads_of(k, kv_heads, [0, 2, 3, 1], not split)]), heads)  # [B, heads, T, S]
        scores = tape.op("Mul", [scores, tape.const(scale, "float32")])
        if bias is not None:
            scores = tape.op("Add", [scores, bias])
        if keep is not None:
            scores = tape.op("Where", [keep, scores, tape.const(MASKED, "float32")])
        probs = tape.op("Softmax", [scores], {"axis": -1})
        if keep is not None:  # a row with no allowed key gets zero weights, as in torch and opset 23
            probs = tape.op("Where", [keep, probs, tape.const(0.0, "float32")])
        y = tape.op("MatMul", [regroup(probs, kv_heads), heads_of(v, kv_heads, [0, 2, 1, 3], not split)])  # [B, kv_heads, groups * T, Dh]
        merged = tape.op("Transpose", [regroup(y, heads)], {"perm": [0, 2, 1, 3]})
        return tape.op("Reshape", [merged, tape.const([0, 0, heads * head_dim], "int64")])
