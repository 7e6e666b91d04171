"""Build, lower and run a graph holding a single op, for the table-driven parity tests.

An op's ``samples`` give its input types as strings (``"float32[2, 3, 8]"``) and its
settings. :func:`one_op_graph` turns one sample into a checked one-node graph whose
inputs have a symbolic batch dimension ``B`` (so the ONNX model really is dynamic),
:func:`make_feeds` draws seeded inputs for a given batch size, and :func:`run_torch` /
:func:`run_onnx` evaluate both backends on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from flashc.diagnostics import Span
from flashc.ir.dims import Dim, Sym
from flashc.ir.graph import Graph, Node, Value, Weight
from flashc.ir.types import DTYPES, TensorType
from flashc.ops import REGISTRY, Op
from flashc.weights import NUMPY_DTYPES, init_weights

BATCH = Sym.name("B")
SPAN = Span.unknown("<op_harness>")
# Sample keys that are neither inputs nor params: `high` bounds integer inputs, `positive`
# draws floats from [0.5, 2) (log, sqrt, fractional powers), `input_scale` widens the normal draw.
META_KEYS = {"high", "positive", "input_scale"}
_TYPE = re.compile(r"^\s*(\w+)\s*\[([^\]]*)\]\s*$")


def canonical_ops() -> dict[str, type[Op]]:
    """Every registered op under its own name (aliases left out), sorted."""
    return {key: cls for key, cls in sorted(REGISTRY.items()) if cls.name == key}


def sample_ids() -> list[tuple[str, int]]:
    return [(name, i) for name, cls in canonical_ops().items() for i in range(len(cls.samples))]


def parse_type(text: str) -> TensorType:
    match = _TYPE.match(text)
    assert match, f"bad type string {text!r}"
    dtype, dims = match.group(1), match.group(2).strip()
    assert dtype in DTYPES, f"unknown dtype in {text!r}"
    return TensorType(dtype, tuple(int(d) for d in dims.split(",")) if dims else ())


def eval_dim(d: Dim, env: dict[str, int]) -> int:
    """The value of a (possibly symbolic) dim once its names are bound."""
    if isinstance(d, int):
        return d
    if d.op == "name":
        return env[d.args[0]]
    a, b = (eval_dim(x, env) for x in d.args)
    return {"+": a + b, "-": a - b, "*": a * b, "//": a // b}[d.op]


# A setting that spells out the batch size cannot follow a dynamic batch by itself:
# rewrite it in terms of B (reshape(2, 3, 4) of a [2, 12] input becomes reshape(B, 3, 4)).
def _batch_shape(shape: tuple, batch: int) -> tuple:
    first = shape[0]
    assert isinstance(first, int) and first % batch == 0, f"reshape target {shape} does not start with the batch"
    return (BATCH * (first // batch) if first != batch else BATCH, *shape[1:])


BATCH_PARAMS = {("reshape", "shape"): _batch_shape}


@dataclass
class OneOp:
    """A one-node graph made from one sample of one op."""

    name: str
    index: int
    sample: dict[str, Any]
    op: Op
    graph: Graph
    dynamic: bool  # the inputs have a symbolic batch dim B

    @property
    def high(self) -> int:
        return int(self.sample.get("high", 5))


def one_op_graph(name: str, index: int, dynamic: bool = True) -> OneOp:
    """The graph of sample ``index`` of op ``name``."""
    return graph_for_sample(name, REGISTRY[name].samples[index], index, dynamic)


def graph_for_sample(name: str, sample: dict[str, Any], index: int = 0, dynamic: bool = True) -> OneOp:
    """A one-node graph applying op ``name`` as ``sample`` describes (B for the leading batch dim)."""
    cls = REGISTRY[name]
    sample = dict(sample)
    clash = META_KEYS & (set(cls.params) | {i.name for i in cls.inputs})
    assert not clash, f"{name} has settings named like the sample keys {sorted(clash)}: rename the sample key"
    known = {i.name for i in cls.inputs} | set(cls.params) | META_KEYS
    unknown = set(sample) - known
    assert not unknown, f"{name} sample {index} has unknown keys {sorted(unknown)}"

    # input types, in the op's input order, with None for absent optional inputs
    slots: list[tuple[str, TensorType | None]] = []
    for inp in cls.inputs:
        given = sample.get(inp.name)
        if inp.variadic:
            assert given is None or isinstance(given, list), f"{name}.{inp.name} is variadic: give a list"
            assert given or inp.optional, f"{name} sample {index} lacks input {inp.name}"
            here = [(f"{inp.name}_{k}", parse_type(t)) for k, t in enumerate(given or [])]
        else:
            assert given is not None or inp.optional, f"{name} sample {index} lacks input {inp.name}"
            here = [(inp.name, parse_type(given) if given is not None else None)]
        for _, t in here:
            assert t is None or not inp.dtypes or t.dtype in inp.dtypes, (
                f"{name}.{inp.name} must be {' or '.join(inp.dtypes)}, sample {index} gives {t}"
            )
        slots.extend(here)

    present = [t for _, t in slots if t is not None]
    batch = present[0].shape[0] if present and present[0].rank else None
    dynamic = dynamic and batch is not None

    def symbolic(t: TensorType | None) -> TensorType | None:
        if t is None or not dynamic or not t.rank or t.shape[0] != batch:
            return t
        return t.with_shape((BATCH, *t.shape[1:]))

    types = [symbolic(t) for _, t in slots]

    attrs: dict[str, Any] = {}
    for pname, param in cls.params.items():
        if pname in sample:
            value = sample[pname]
            if dynamic and (name, pname) in BATCH_PARAMS:
                value = BATCH_PARAMS[name, pname](value, batch)
            attrs[pname] = value
        else:
            assert not param.required, f"{name} sample {index} lacks required param {pname}"
            attrs[pname] = param.default
    op = cls(attrs, SPAN)

    result = op.infer(*types)
    out_types = result if isinstance(result, tuple) else (result,)
    specs = op.weights(*types)
    module = op.torch_module(*types)
    layer = "layer" if specs or module is not None else None
    weights = {f"layer.{local}": Weight(f"layer.{local}", spec, SPAN) for local, spec in specs.items()}

    inputs = tuple(Value(n, t) if t is not None else None for (n, _), t in zip(slots, types))
    outputs = tuple(Value("y" if len(out_types) == 1 else f"y{k}", t) for k, t in enumerate(out_types))
    node = Node(op, inputs, outputs, layer, tuple((local, f"layer.{local}") for local in specs), SPAN)
    graph = Graph(
        name="OneOp",
        params={},
        inputs=tuple(v for v in inputs if v is not None),
        nodes=(node,),
        outputs=tuple((v.name, v) for v in outputs),
        weights=weights,
        span=SPAN,
        layers={layer: cls.name} if layer else {},
    )
    return OneOp(name, index, sample, op, graph, dynamic)


def random_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """The seeded init, with constant-initialised floats (norm scales, running stats) randomised.

    Ones and zeros would let a lowering that drops a scale, a shift or the running
    statistics pass; variances stay positive.
    """
    arrays = init_weights(graph, seed)
    rng = np.random.default_rng(seed + 1)
    for path in sorted(arrays):
        spec = graph.weights[path].spec
        # init_weights hands 0-d weights (batchnorm's num_batches_tracked) back as
        # shape [1], which check_weights then rejects: give them their declared shape.
        arrays[path] = arrays[path].reshape(spec.shape)
        if spec.init[0] not in ("ones", "zeros") or spec.dtype not in ("float32", "float64"):
            continue
        if path.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, spec.shape)
        elif spec.init[0] == "ones":
            value = 1.0 + 0.5 * rng.standard_normal(spec.shape)
        else:
            value = 0.5 * rng.standard_normal(spec.shape)
        arrays[path] = np.ascontiguousarray(value, dtype=NUMPY_DTYPES[spec.dtype])
    return arrays


def make_feeds(case: OneOp, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs with B bound to ``batch``.

    Floats are standard normal, integers uniform in [0, high), booleans random but
    True in the last column and False in the first: a padding mask (True = padding) then never hides a
    whole row, nor, combined with a causal mask, every key a query may see. Such
    rows have no defined attention result (flashc's backends disagree on them).
    """
    rng = np.random.default_rng(seed)
    env = {"B": batch}
    feeds = {}
    for v in case.graph.inputs:
        shape = tuple(eval_dim(d, env) for d in v.type.shape)
        dtype = NUMPY_DTYPES[v.type.dtype]
        if v.type.is_float and case.sample.get("positive"):
            arr = rng.uniform(0.5, 2.0, shape).astype(dtype)
        elif v.type.is_float:
            arr = (float(case.sample.get("input_scale", 1.0)) * rng.standard_normal(shape)).astype(dtype)
        elif v.type.dtype == "bool":
            arr = rng.random(shape) < 0.5
            if arr.ndim:
                arr[..., 0] = False  # see the docstring
                if shape[-1] > 1:
                    arr[..., -1] = True  # and every row has some padding
        else:
            arr = rng.integers(0, case.high, shape).astype(dtype)
        feeds[v.name] = arr
    return feeds


def expected_shapes(case: OneOp, batch: int) -> list[tuple[int | None, ...]]:
    """Output shapes with B bound; a dim known only at run time (an expert's tokens) is None."""

    def dim(d: Dim) -> int | None:
        try:
            return eval_dim(d, {"B": batch})
        except KeyError:
            return None

    return [tuple(dim(d) for d in v.type.shape) for _, v in case.graph.outputs]


def shape_fits(got: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def run_torch(module: Any, graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[v.name].copy()) for v in graph.inputs))
    outs = out if isinstance(out, tuple) else (out,)
    return [o.detach().cpu().numpy() for o in outs]


def onnx_session(model: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_onnx(session: Any, graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session.run([n for n, _ in graph.outputs], {v.name: feeds[v.name] for v in graph.inputs})
