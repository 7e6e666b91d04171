"""`scan(Step, xs, init = h0, axis = 1)`: a block applied step by step along a sequence axis.

The step block's free parameters take, in order, one step of each sequence and
then each carried state; what it returns is the step's outputs and then the new
states (`block Step(x_t, h) { ...; return y_t, h }`). Other parameters are bound
beforehand and passed through unchanged at every step — an attention decoder's
encoder outputs: `scan(Step(memory = enc), ys, init = s0)`. The block may also
read any tensor of the model by name.

The block is built once, on one step's types, so its weights exist once and are
shared by every step, and its shapes are checked once: a state must come back
with the type it went in with. The result is one node whose body is the step
(see flashc/ops/control.py): a Python loop in PyTorch, an ONNX Scan.
"""

from __future__ import annotations

from typing import Any

from flashc.build.scope import Scope
from flashc.build.state import BuilderState
from flashc.build.values import Block, Tensor, describe
from flashc.diagnostics import Span
from flashc.ir.graph import Graph, Node, Value
from flashc.ops.base import snake
from flashc.ops.control import Scan
from flashc.syntax import ast

SETTINGS = ("init", "axis")


class Scans(BuilderState):
    def make_scan(self, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        seqs = [a for a in args if isinstance(a[0], Tensor)]
        rest = [a for a in args if not isinstance(a[0], Tensor)]
        if len(rest) != 1 or not isinstance(rest[0][0], Block):
            got = describe(rest[0][0]) if rest else "none"
            raise self.fail(rest[0][1] if rest else span, f"scan needs one step block, got {got}",
                            "e.g. `outs, h = xs |> scan(Step, init = h0)`")
        block = rest[0][0]
        for key, (_, aspan) in kwargs.items():
            if key not in SETTINGS:
                raise self.fail(aspan, f"scan has no argument `{key}`", f"its arguments are: {', '.join(SETTINGS)}")
        if not seqs:
            raise self.fail(span, "scan needs a sequence to step along", "e.g. `xs |> scan(Step, init = h0)`")
        inits = self._inits(kwargs.get("init"))
        axis, aspan = kwargs.get("axis", (1, span))
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise self.fail(aspan, f"scan axis must be a whole number, got {describe(axis)}")
        rank = seqs[0][0].value.type.rank
        if not -rank <= axis < rank:
            raise self.fail(aspan, f"scan axis {axis} is out of range for {describe(seqs[0][0])}")
        axis %= rank
        length = seqs[0][0].value.type.shape[axis]
        for value, vspan in seqs:
            t = value.value.type
            if t.rank != rank or t.shape[axis] != length:
                raise self.fail(vspan, f"scanned sequences must have the same rank and length on axis {axis}; "
                                       f"got {describe(seqs[0][0])} and {describe(value)}")
        return self.run_scan(block, [v.value for v, _ in seqs], inits, axis, span, scope)

    def _inits(self, given: tuple[Any, Span] | None) -> list[Value]:
        if given is None:
            return []
        value, vspan = given
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if not isinstance(item, Tensor):
                raise self.fail(vspan, f"scan `init` is the initial state: a tensor or a tuple of tensors, "
                                       f"got {describe(item)}")
        return [item.value for item in items]

    def run_scan(self, block: Block, seqs: list[Value], inits: list[Value], axis: int, span: Span,
                 scope: Scope) -> Any:
        name = block.node.name
        free = [p for p in block.node.params if p.name not in block.bound]
        if len(free) < len(seqs) + len(inits) or any(p.default is None for p in free[len(seqs) + len(inits):]):
            wanted = [p.name for p in free]
            raise self.fail(span, f"scan hands {name} {len(seqs)} step input(s) and {len(inits)} state(s), "
                                  f"but its free parameters are ({', '.join(wanted)})",
                            "the block's parameters are the step inputs, then the states; bind others first: "
                            f"`{name}(memory = enc)`")
        steps = [self.new_value(p.name, v.type.with_shape(v.type.shape[:axis] + v.type.shape[axis + 1:]))
                 for p, v in zip(free, seqs)]
        states = [self.new_value(p.name, v.type) for p, v in zip(free[len(seqs):], inits)]
        bound = {**block.bound, **{p.name: Tensor(v) for p, v in zip(free, steps + states)}}
        if block.path is not None:
            prefix, owner = block.path, block.owner
        else:
            prefix = scope.fresh(snake(name))
            owner = (scope.owner, prefix)
            prefix = self.claim_path(prefix, owner)
        outer, self.nodes = self.nodes, []
        try:
            result = self.run_block(block, bound, prefix, owner, span)
        finally:
            body_nodes, self.nodes = self.nodes, outer
        returned = list(result) if isinstance(result, tuple) else [result]
        where = self._return_span(block)
        if len(returned) <= len(inits) or not all(isinstance(r, Tensor) for r in returned):
            raise self.fail(where, f"a scan step returns its outputs, then its {len(inits)} new state(s); "
                                   f"{name} returns {', '.join(describe(r) for r in returned)}")
        outs = [r.value for r in returned[: len(returned) - len(inits)]]
        new_states = [r.value for r in returned[len(returned) - len(inits):]]
        for p, old, new in zip(free[len(seqs):], states, new_states):
            if new.type != old.type:
                raise self.fail(where, f"{name} returns its state `{p.name}` as {new.type}, but it came in as "
                                       f"{old.type}", "a scanned state keeps its shape and dtype from step to step")
        body = Graph(name=name, params={}, inputs=tuple(states + steps), nodes=tuple(body_nodes),
                     outputs=tuple((v.name, v) for v in new_states + outs), weights={}, span=span)
        captured = _captured(body)
        op = Scan({"axis": axis, "sequences": len(seqs), "states": len(inits),
                   "step_types": tuple(v.type for v in outs), "block": name}, span)
        inputs = (*seqs, *inits, *captured)
        results = [self.new_value(snake(name), t) for t in op.infer(*(v.type for v in inputs))]
        self.nodes.append(Node(op, inputs, tuple(results), None, (), span, tuple(self.frames), bodies=(body,)))
        tensors = tuple(Tensor(v) for v in results)
        return tensors[0] if len(tensors) == 1 else tensors

    @staticmethod
    def _return_span(block: Block) -> Span:
        ret = [s for s in block.node.body if isinstance(s, ast.Return)]
        return ret[-1].span if ret else block.node.span


def _captured(body: Graph) -> list[Value]:
    """Values the body reads that it neither receives nor computes: the outer tensors it uses."""
    made = {v.name for v in body.inputs} | {o.name for n in body.nodes for o in n.outputs}
    seen: dict[str, Value] = {}
    reads = [v for n in body.nodes for v in n.inputs if v is not None] + [v for _, v in body.outputs]
    for v in reads:
        if v.name not in made:
            seen.setdefault(v.name, v)
    return list(seen.values())
