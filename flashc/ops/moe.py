"""The pieces of a sparse mixture of experts, as `moe(Expert, experts = n, k = 2)` assembles them.

`moe` (flashc/build/moe.py) routes each token to k of n experts and runs every
expert only on its own tokens, so the work is proportional to k / n:

    logits = gate(x)                                   # [.., n], the router (Mixtral's `gate`)
    weights, index = moe_route(logits, k)              # [N, k] each, N = tokens
    x_e, at_e, w_e = moe_dispatch(x, weights, index, expert = e)   # the tokens_e tokens of expert e
    y_e = Expert(x_e)                                  # [tokens_e, d_out], one block per expert
    y = moe_combine(x, y_0, at_0, w_0, y_1, at_1, w_1, ...)        # sum_e w_e * y_e back at rows at_e

How many tokens an expert receives is known only at run time: it is the
symbolic dimension ``tokens_e``. PyTorch indexes by expert (``nonzero``, row
indexing, ``index_add``); ONNX uses TopK, NonZero, Gather and one ScatterND with
``reduction = "add"``. ``moe_balance`` is the load-balancing loss of Switch
Transformer and Mixtral, n * sum_e f_e P_e.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flashc.ir.dims import Sym, is_static, product
from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param

TORCH_MOE = '''
class MoE:
    """The routing, dispatch and combine steps of a sparse mixture of experts."""

    @staticmethod
    def route(logits, k, router, normalize):
        """The k experts of each token and their weights: [N, k] each, N = tokens."""
        logits = logits.reshape(-1, logits.shape[-1])
        if router == "topk_softmax":
            top, index = torch.topk(logits, k, dim=-1)
            return torch.softmax(top, dim=-1), index
        weights, index = torch.topk(torch.softmax(logits, dim=-1), k, dim=-1)  # Mixtral: softmax, then top k
        if normalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, index

    @staticmethod
    def dispatch(x, weights, index, expert, dense=False):
        """The tokens routed to one expert: their rows of x, their positions, their routing weights [S, 1]."""
        x = x.reshape(-1, x.shape[-1])
        hit = index == expert
        weight = (weights * hit).sum(dim=-1, keepdim=True)  # zero where the token is not routed here
        if dense:
            return x, torch.arange(x.shape[0], device=x.device), weight
        at = hit.any(dim=-1).nonzero().squeeze(-1)
        return x[at], at, weight[at]

    @staticmethod
    def combine(x, *parts):
        """Each expert's outputs times their routing weights, summed back into their tokens' rows."""
        ys, ats, ws = parts[0::3], parts[1::3], parts[2::3]
        out = ys[0].new_zeros(x.shape[:-1].numel(), ys[0].shape[-1])
        out = out.index_add(0, torch.cat(ats), torch.cat([y * w for y, w in zip(ys, ws)]))
        return out.reshape(*x.shape[:-1], -1)
'''


def tokens(x: TensorType) -> Any:
    """N: the number of tokens of [.., d], the product of the leading dims."""
    return product(x.shape[:-1])


def _flat(tape: Any, v: str, last: int) -> str:
    return tape.op("Reshape", [v, tape.const([-1, last], "int64")])


class MoeRoute(Op):
    """Router of a mixture of experts: top-k experts of each token and their weights from the gate's logits.

    ``softmax_topk`` (Mixtral): softmax over all experts, the k largest, renormalised to sum to 1
    unless ``normalize = false`` (Switch, Qwen2-MoE's default); ``topk_softmax``: the k largest
    logits, then a softmax over those k.
    """

    family = "moe"
    inputs = (Input("logits"),)
    params = {
        "k": Param(int, 2, doc="experts per token", minimum=1),
        "router": Param(str, "softmax_topk", choices=("softmax_topk", "topk_softmax")),
        "normalize": Param(bool, True, doc="softmax_topk: renormalise the k weights to sum to 1"),
    }
    torch_prelude = (TORCH_MOE,)
    samples = (
        {"logits": "float32[6, 4]", "k": 2},
        {"logits": "float32[2, 3, 5]", "k": 3, "normalize": False},
        {"logits": "float32[6, 4]", "k": 2, "router": "topk_softmax"},
    )

    def infer(self, logits: TensorType) -> tuple[TensorType, TensorType]:
        self.require(logits.is_float and logits.rank >= 1, f"moe_route needs float logits [.., experts], got {logits}")
        n = logits.shape[-1]
        self.require(is_static(n), f"moe_route needs a fixed number of experts, got {logits.shape_str()}")
        self.require(self.k <= n, f"moe_route picks k = {self.k} of only {n} experts")
        shape = (tokens(logits), self.k)
        return logits.with_shape(shape), TensorType("int64", shape)

    def to_torch(self, c: Lowering) -> str:
        return f"MoE.route({c.inputs[0]}, {self.k}, {self.router!r}, {self.normalize})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        logits = _flat(tape, c.inputs[0], int(c.types[0].shape[-1]))
        k = tape.const([self.k], "int64")
        if self.router == "topk_softmax":
            top, index = tape.op("TopK", [logits, k], {"axis": -1}, outputs=2)
            return [tape.op("Softmax", [top], {"axis": -1}), index]
        weights, index = tape.op("TopK", [tape.op("Softmax", [logits], {"axis": -1}), k], {"axis": -1}, outputs=2)
        if self.normalize:
            total = tape.op("ReduceSum", [weights, tape.const([-1], "int64")], {"keepdims": 1})
            weights = tape.op("Div", [weights, total])
        return [weights, index]


class MoeDispatch(Op):
    """The tokens of one expert: (rows of x [tokens_e, d], their positions [tokens_e], weights [tokens_e, 1]).

    ``dense`` hands the expert every token (weight 0 where it was not chosen): the dense
    computation a sparse mixture avoids, kept as a reference and for measurements.
    """

    family = "moe"
    inputs = (Input("x"), Input("weights"), Input("index", dtypes=("int64",)))
    params = {
        "expert": Param(int, doc="which expert's tokens", minimum=0),
        "dense": Param(bool, False, doc="give the expert every token"),
    }
    torch_prelude = (TORCH_MOE,)
    samples = (
        {"x": "float32[6, 5]", "weights": "float32[6, 2]", "index": "int64[6, 2]", "expert": 1, "high": 3},
        {"x": "float32[6, 5]", "weights": "float32[6, 2]", "index": "int64[6, 2]", "expert": 2, "dense": True,
         "high": 3},
    )

    def infer(self, x: TensorType, weights: TensorType, index: TensorType) -> tuple[TensorType, ...]:
        self.require(x.is_float and x.rank >= 1 and is_static(x.shape[-1]),
                     f"moe_dispatch needs float tokens [.., d] with a fixed d, got {x}")
        n = tokens(x)
        self.require(weights.is_float and weights.rank == 2 and weights.shape[0] == n and index.shape == weights.shape,
                     f"moe_dispatch needs weights and index [{n}, k] for {x}, got {weights} and {index}")
        rows: Any = n if self.dense else Sym.name(f"tokens_{self.expert}")
        return (x.with_shape((rows, x.shape[-1])), TensorType("int64", (rows,)), weights.with_shape((rows, 1)))

    def to_torch(self, c: Lowering) -> str:
        x, weights, index = c.inputs
        return f"MoE.dispatch({x}, {weights}, {index}, {self.expert}{', dense=True' if self.dense else ''})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        x, weights, index = c.inputs
        x = _flat(tape, x, int(c.types[0].shape[-1]))
        hit = tape.op("Cast", [tape.op("Equal", [index, tape.const(self.expert, "int64")])], {"to": 1})  # float
        last = tape.const([-1], "int64")
        weight = tape.op("ReduceSum", [tape.op("Mul", [weights, hit]), last], {"keepdims": 1})  # [N, 1]
        if self.dense:
            count = tape.op("Gather", [tape.op("Shape", [x]), tape.const(0, "int64")], {"axis": 0})
            at = tape.op("Range", [tape.const(0, "int64"), count, tape.const(1, "int64")])
            return [x, at, weight]
        chosen = tape.op("Greater", [tape.op("ReduceSum", [hit, last], {"keepdims": 0}), tape.const(0.0, "float32")])
        at = tape.op("Reshape", [tape.op("NonZero", [chosen]), last])  # [S]
        return [tape.op("Gather", [x, at], {"axis": 0}), at, tape.op("Gather", [weight, at], {"axis": 0})]


class MoeCombine(Op):
    """sum over experts of weights * outputs, added at their tokens' rows: [.., d_out] shaped like x's tokens.

    ``parts`` are (y_e [S_e, d_out], at_e [S_e], w_e [S_e, 1]) for each expert, in order.
    """

    family = "moe"
    inputs = (Input("x"), Input("parts", variadic=True))
    torch_prelude = (TORCH_MOE,)
    samples = (
        {"x": "float32[6, 5]", "parts": ["float32[4, 3]", "int64[4]", "float32[4, 1]",
                                         "float32[3, 3]", "int64[3]", "float32[3, 1]"], "high": 2},
        {"x": "float32[2, 3, 5]", "parts": ["float32[5, 4]", "int64[5]", "float32[5, 1]"], "high": 6},
    )

    def infer(self, x: TensorType, *parts: TensorType) -> TensorType:
        self.require(len(parts) >= 3 and len(parts) % 3 == 0,
                     f"moe_combine takes (outputs, positions, weights) per expert, got {len(parts)} tensors")
        d_out = parts[0].shape[-1]
        for i in range(0, len(parts), 3):
            y, at, w = parts[i: i + 3]
            ok = (y.rank == 2 and y.shape[-1] == d_out and y.dtype == parts[0].dtype and at.dtype == "int64"
                  and at.shape == y.shape[:1] and w.shape == (y.shape[0], 1))
            self.require(ok, f"moe_combine: expert {i // 3} gives {y}, {at}, {w}; each expert must give "
                             f"[S, {d_out}] outputs, [S] positions and [S, 1] weights",
                         "every expert of a mixture must return the same feature size")
        return parts[0].with_shape(x.shape[:-1] + (d_out,))

    def to_torch(self, c: Lowering) -> str:
        return f"MoE.combine({', '.join(c.inputs)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        from onnx import numpy_helper

        x, *parts = c.inputs
        d_out = int(c.out_types[0].shape[-1])
        zero = np.zeros(1, dtype=np.float32)
        lead = tape.op("Shape", [x], {"end": -1})
        count = tape.op("ReduceProd", [lead], {"keepdims": 1})
        zeros = tape.op("ConstantOfShape", [tape.op("Concat", [count, tape.const([d_out], "int64")], {"axis": 0})],
                        {"value": numpy_helper.from_array(zero)})
        updates = [tape.op("Mul", [parts[i], parts[i + 2]]) for i in range(0, len(parts), 3)]
        ats = [parts[i + 1] for i in range(0, len(parts), 3)]
        update = updates[0] if len(updates) == 1 else tape.op("Concat", updates, {"axis": 0})
        at = ats[0] if len(ats) == 1 else tape.op("Concat", ats, {"axis": 0})
        at = tape.op("Unsqueeze", [at, tape.const([1], "int64")])
        out = tape.op("ScatterND", [zeros, at, update], {"reduction": "add"})
        return tape.op("Reshape", [out, tape.op("Concat", [lead, tape.const([d_out], "int64")], {"axis": 0})])


class MoeBalance(Op):
    """Load-balancing loss of a mixture (Switch Transformer, Mixtral): n * sum_e f_e * P_e, a scalar.

    f_e: the share of (token, slot) choices that went to expert e, summed over the k slots;
    P_e: the mean router probability of e. 1 when the load is uniform (k = 1).
    """

    family = "moe"
    inputs = (Input("logits"), Input("index", dtypes=("int64",)))
    samples = (
        {"logits": "float32[6, 4]", "index": "int64[6, 2]", "high": 4},
        {"logits": "float32[6, 5]", "index": "int64[6, 1]", "high": 5},
    )

    def infer(self, logits: TensorType, index: TensorType) -> TensorType:
        self.require(logits.is_float and logits.rank >= 1 and is_static(logits.shape[-1]),
                     f"moe_balance needs float logits [.., experts], got {logits}")
        self.require(index.rank == 2 and index.shape[0] == tokens(logits),
                     f"moe_balance needs the router's index [{tokens(logits)}, k], got {index}")
        return logits.with_shape(())

    def to_torch(self, c: Lowering) -> str:
        logits, index = c.inputs
        n = int(c.types[0].shape[-1])
        probs = f"torch.softmax({logits}.reshape(-1, {n}), dim=-1)"
        return f"{n} * (F.one_hot({index}, {n}).float().mean(0).sum(0) * {probs}.mean(0)).sum()"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        logits, index = c.inputs
        n = int(c.types[0].shape[-1])
        probs = tape.op("Softmax", [_flat(tape, logits, n)], {"axis": -1})
        onehot = tape.op("OneHot", [index, tape.const(n, "int64"), tape.const([0.0, 1.0], "float32")], {"axis": -1})
        share = tape.op("ReduceSum", [onehot, tape.const([0, 1], "int64")], {"keepdims": 0})  # [n], sums to N * k
        mass = tape.op("ReduceSum", [probs, tape.const([0], "int64")], {"keepdims": 0})  # [n], sums to N
        count = tape.op("Cast", [tape.op("Gather", [tape.op("Shape", [index]), tape.const(0, "int64")], {"axis": 0})],
                        {"to": 1})
        total = tape.op("ReduceSum", [tape.op("Mul", [share, mass])], {"keepdims": 0})
        return tape.op("Mul", [tape.op("Div", [total, tape.op("Mul", [count, count])]), tape.const(float(n), "float32")])
