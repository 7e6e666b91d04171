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
(T = 1). An encoder-decoder (T5, the translation spec) is split in two: the
encoder, which also returns every cross-attention's keys and values
(``encoder_key_values.{i}.key/value``, computed once per source), and the
cached decoder, which reads them (`split_encoder_decoder`). Attention that
cannot be cached (not causal in a decoder-only model, cross-attention to a
value computed from the decoder's own input, a padding mask on
self-attention, hard attention, attention inside a scan) is refused at its
source line, because caching it would change what it computes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from flashc.diagnostics import error
from flashc.ir.dims import Sym
from flashc.ir.graph import Graph, Node, Value
from flashc.ops.attention import Attention
from flashc.ops.embedding import Positions
from flashc.ops.kv_cache import CachedAttention, CachedCrossAttention, CrossKeys, ShiftedPositions

PAST = "past_key_values.{i}.{part}"
CROSS = "encoder_key_values.{i}.{part}"
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
        if isinstance(node.op, Attention) and not isinstance(node.op, CachedCrossAttention):
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



def _depends(graph: Graph) -> dict[str, set[str]]:
    """For every value, the graph inputs it is computed from."""
    deps: dict[str, set[str]] = {v.name: {v.name} for v in graph.inputs}
    for node in graph.nodes:
        found = set().union(*(deps.get(v.name, set()) for v in node.inputs if v is not None))
        for o in node.outputs:
            deps[o.name] = found
    return deps


def _layer_weights(graph: Graph, nodes: list[Node]) -> dict:
    """The weights the nodes read, with every weight of their layers (a torch module owns them all)."""
    layers = {n.layer for n in nodes if n.layer}
    read = {target for n in nodes for _, target in n.weights}
    return {p: w for p, w in graph.weights.items() if p in read or p.rsplit(".", 1)[0] in layers}


def split_encoder_decoder(graph: Graph) -> tuple[Graph, Graph]:
    """An encoder-decoder as two graphs: the encoder, which also returns every cross-attention's keys and
    values (``encoder_key_values.{i}.key/value``, computed once), and the decoder with a KV cache, which
    takes them, the encoder values it reads, its own inputs and the self-attention cache."""
    deps = _depends(graph)
    attn = [n for n in graph.nodes if type(n.op) is Attention and n.inputs[1] is None]
    causal = set().union(*(deps[n.inputs[0].name] for n in attn if n.op.causal))
    bidirectional = set().union(*(deps[n.inputs[0].name] for n in attn if not n.op.causal))
    starts = sorted(causal - bidirectional)
    if len(starts) != 1 or not bidirectional:
        raise error(graph.span, f"--kv-cache: {graph.name} is not an encoder-decoder with one decoder input",
                    "an encoder-decoder has non-causal self-attention over its source and causal over its target")
    start = starts[0]
    # nodes computed from no input at all (a parameter table, a constant) go to both graphs
    free = {id(n) for n in graph.nodes if not any(deps.get(v.name) for v in n.inputs if v is not None)}
    decoder_nodes = [n for n in graph.nodes if id(n) in free
                     or any(start in deps.get(v.name, set()) for v in n.inputs if v is not None)]
    chosen = {id(n) for n in decoder_nodes} - free
    encoder_nodes = [n for n in graph.nodes if id(n) not in chosen]
    made_by_encoder = {o.name: o for n in encoder_nodes for o in n.outputs} | {v.name: v for v in graph.inputs}
    extra: list[Node] = []
    cross_outputs: list[tuple[str, Value]] = []
    cross_inputs: list[Value] = []
    new_decoder: list[Node] = []
    for node in decoder_nodes:
        kv = node.inputs[1] if isinstance(node.op, Attention) and len(node.inputs) > 1 else None
        if type(node.op) is not Attention or kv is None or kv.name not in made_by_encoder:
            new_decoder.append(node)
            continue
        if node.op.positional:
            raise error(node.span, "--kv-cache: this cross-attention depends on positions; it cannot be cached")
        i = len(cross_inputs) // 2
        attrs = {**node.op.attrs, "query_type": (node.inputs[0].type, kv.type)}
        keys = CrossKeys(attrs, node.op.span)
        types = keys.infer(kv.type)
        pair = tuple(Value(CROSS.format(i=i, part=p), t) for p, t in zip(PARTS, types))
        extra.append(replace(node, op=keys, inputs=(kv,), outputs=pair))
        cross_outputs += [(v.name, v) for v in pair]
        cross_inputs += pair
        op = CachedCrossAttention(attrs, node.op.span)
        new_decoder.append(replace(node, op=op, inputs=(node.inputs[0], *pair, node.inputs[2])))
    produced = {o.name for n in new_decoder for o in n.outputs} | {v.name for v in cross_inputs}
    read = [v for n in new_decoder for v in n.inputs if v is not None and v.name not in produced]
    inputs = list({v.name: v for v in read}.values())
    inputs.sort(key=lambda v: v.name != start)  # the decoder's own input first
    encoder_out = {o.name for n in encoder_nodes if id(n) not in free for o in n.outputs}
    outputs = [(n, v) for n, v in graph.outputs if v.name in encoder_out]
    outputs += [(v.name, v) for v in inputs if v.name in encoder_out and v.name not in {o.name for _, o in outputs}]
    encoder = replace(graph, name=f"{graph.name}Encoder", nodes=tuple(encoder_nodes + extra),
                      inputs=tuple(v for v in graph.inputs if v.name != start),
                      outputs=tuple(outputs + cross_outputs),
                      weights=_layer_weights(graph, encoder_nodes + extra))
    decoder = replace(graph, name=f"{graph.name}Decoder", nodes=tuple(new_decoder), inputs=tuple(inputs + cross_inputs),
                      outputs=tuple((n, v) for n, v in graph.outputs if v.name not in encoder_out),
                      weights=_layer_weights(graph, new_decoder))
    return encoder, with_kv_cache(decoder)


def cached_graphs(graph: Graph) -> tuple[Graph | None, Graph]:
    """(encoder or None, the cached decoder): an encoder-decoder (non-causal self-attention over a
    source, cross-attention to it) is split; any other model is cached whole (or refused)."""
    plain = [n for n in graph.nodes if type(n.op) is Attention]
    if any(n.inputs[1] is not None for n in plain) and any(not n.op.causal and n.inputs[1] is None for n in plain):
        return split_encoder_decoder(graph)
    return None, with_kv_cache(graph)


def encoder_path(path: str | Path) -> Path:
    """Where the encoder of an encoder-decoder goes beside its cached decoder: m.onnx -> m.encoder.onnx."""
    path = Path(path)
    return path.with_name(f"{path.stem}.encoder{path.suffix}")
