"""The KV-cache transform: a causal decoder's graph that takes and returns past keys and values.

`flashc compile SPEC --kv-cache` (and ``Spec.to_onnx(kv_cache=True)``,
``Spec.to_torch(kv_cache=True)``) rewrite the checked graph before lowering, so
no spec changes to be generated from:

- every causal self-attention node becomes a `CachedAttention` with two more
  inputs, ``past_key_values.{i}.key`` / ``.value`` [B, kv_heads, P, head_dim],
  and two more outputs, ``present.{i}.key`` / ``.value`` [B, kv_heads, P + T,
  head_dim] (i counts attention layers in graph order, as Hugging Face does);
- every ``positions(T)`` whose length is the attention's query length reads
  from P on (GPT-2's learned positions); rotary embeddings, ALiBi, T5 buckets
  and sliding windows shift inside the attention itself.

One graph serves the prompt (P = 0: feed empty caches) and each next token
(T = 1). Attention that cannot be cached (not causal, cross-attention, a
padding mask, hard attention, attention inside a scan) is refused at its
source line, because caching it would change what it computes.
"""

from __future__ import annotations

from dataclasses import replace

from flashc.diagnostics import error
from flashc.ir.dims import Sym
from flashc.ir.graph import Graph, Node, Value
from flashc.ops.attention import Attention
from flashc.ops.embedding import Positions
from flashc.ops.kv_cache import CachedAttention, ShiftedPositions

PAST = "past_key_values.{i}.{part}"
PRESENT = "present.{i}.{part}"
PARTS = ("key", "value")


def cache_inputs(graph: Graph) -> list[Value]:
    """The past key/value inputs of a cached graph, in order (empty for a graph without a cache)."""
    return [v for v in graph.inputs if v.name.startswith("past_key_values.")]


def _past_dim(graph: Graph) -> str:
    """A name for the cached length that no input dimension already uses."""
    used = {str(d) for v in graph.inputs for d in v.type.shape}
    return next(n for n in ("P", "past", "past_length", "_past") if n not in used)


def _refusal(node: Node) -> str | None:
    """Why this attention node cannot take a cache, or None."""
    op = node.op
    if type(op) is not Attention:
        return f"`{op.name}` has no KV cache; only `attention` does"
    if not op.causal:
        return "--kv-cache caches causal self-attention, and this attention is not causal"
    if node.inputs[1] is not None:
        return "--kv-cache caches self-attention; this is cross-attention (keys from another sequence)"
    if node.inputs[2] is not None:
        return "--kv-cache does not take a key_padding_mask: the cache grows one token at a time"
    return None


def with_kv_cache(graph: Graph) -> Graph:
    """``graph`` with a KV cache on every causal self-attention (see the module docstring)."""
    body_nodes = {id(n) for top in graph.nodes for body in top.bodies for n in body.walk()}
    for node in graph.walk():
        if isinstance(node.op, Attention) and id(node) in body_nodes:
            raise error(node.span, "--kv-cache cannot cache attention inside a scan's step")
    past = _past_dim(graph)
    nodes: list[Node] = []
    inputs: list[Value] = []
    outputs: list[tuple[str, Value]] = []
    query_lengths: set[str] = set()
    first_past: Value | None = None
    for node in graph.nodes:
        if isinstance(node.op, Attention):
            reason = _refusal(node)
            if reason:
                raise error(node.span, reason, "compile without --kv-cache, or cache only a causal decoder")
            i = len(inputs) // 2
            op = CachedAttention(dict(node.op.attrs), node.op.span)
            x = node.inputs[0]
            cache = op.cache_type(x.type)
            cache = cache.with_shape((*cache.shape[:2], Sym.name(past), cache.shape[3]))
            pasts = tuple(Value(PAST.format(i=i, part=p), cache) for p in PARTS)
            _, present_k, present_v = op.infer(x.type, *(v.type for v in pasts))
            presents = tuple(Value(PRESENT.format(i=i, part=p), t) for p, t in zip(PARTS, (present_k, present_v)))
            inputs += pasts
            outputs += [(v.name, v) for v in presents]
            first_past = first_past or pasts[0]
            query_lengths.add(str(x.type.shape[1]))
            nodes.append(replace(node, op=op, inputs=(x, *pasts), outputs=(node.outputs[0], *presents)))
        else:
            nodes.append(node)
    if first_past is None:
        raise error(graph.span, f"--kv-cache: {graph.name} has no causal self-attention to cache",
                    "a KV cache serves decoders (GPT-2, LLaMA); compile this model without it")
    nodes = [_shifted(n, first_past, query_lengths) for n in nodes]
    return replace(graph, inputs=(*graph.inputs, *inputs), nodes=tuple(nodes), outputs=(*graph.outputs, *outputs))


def _shifted(node: Node, past: Value, query_lengths: set[str]) -> Node:
    """`positions(T)` of the new tokens counts from the cached length on; other nodes stay."""
    if type(node.op) is not Positions or str(node.op.length) not in query_lengths:
        return node
    return replace(node, op=ShiftedPositions(dict(node.op.attrs), node.op.span), inputs=(past, *node.inputs))

