"""Control flow: `scan`, a block applied step by step along a sequence axis.

    outs, h_last = xs |> scan(Step, init = h0, axis = 1)

The builder (flashc/build/scan.py) checks the step block once and stores it as
the node's body: inputs ``(states..., step inputs...)``, outputs ``(new
states..., step outputs...)`` — ONNX Scan's order. The node's inputs are the
sequences, the initial states, then the outer values the body reads. PyTorch
runs the body in a Python loop inside a helper method of the module; ONNX runs
it as the body of a ``Scan`` whose nodes come from the same op lowerings.

`Scan` is not in the registry: it is only made by the `scan` construct, never
called by name, and its body has no meaning without a spec around it.
"""

from __future__ import annotations

from typing import Any

from flashc.ir.types import TensorType
from flashc.ops.base import Lowering, Op, Param, snake


class Scan(Op):
    """A step block applied along ``axis`` of the sequences, carrying ``states`` from step to step."""

    abstract = True  # made by the builder's `scan`, not by a call of its name
    name = "scan"
    family = "control"
    params = {
        "axis": Param(int, 1, doc="the sequence axis (non-negative)"),
        "sequences": Param(int, 1, doc="how many sequences are scanned together"),
        "states": Param(int, 0, doc="how many states are carried"),
        "step_types": Param("types", doc="the type of each per-step output"),
        "block": Param(str, doc="the step block's name (`Step`), for the generated method"),
    }

    def infer(self, *xs: TensorType) -> tuple[TensorType, ...]:
        seqs, inits = xs[: self.sequences], xs[self.sequences: self.sequences + self.states]
        length = seqs[0].shape[self.axis]
        stacked = tuple(t.with_shape(t.shape[: self.axis] + (length,) + t.shape[self.axis:]) for t in self.step_types)
        return stacked + tuple(inits)

    def to_torch(self, c: Lowering) -> str:
        """A helper method looping over the steps; the forward line calls it."""
        body, s, n = c.bodies[0], self.sequences, self.states
        seqs, captured = c.inputs[:s], c.inputs[s + n:]
        state_in, step_in = body.inputs[:n], body.inputs[n:]
        state_out, step_out = body.outputs[:n], body.outputs[n:]
        taken = set(body.names) | set(c.inputs)
        stacks = []
        for out in step_out:
            name, i = f"{out}_steps", 1
            while name in taken:
                name, i = f"{out}_steps_{i}", i + 1
            taken.add(name)
            stacks.append(name)
        unbound = [f"{x}.unbind({self.axis})" for x in seqs]
        loop = f"for {step_in[0]} in {unbound[0]}:" if s == 1 else \
            f"for {', '.join(step_in)} in zip({', '.join(unbound)}):"
        lines = [f"{name} = []" for name in stacks] + [loop]
        lines += [f"    {line}" for line in body.lines]
        if n:
            lines.append(f"    {', '.join(state_in)} = {', '.join(state_out)}")
        lines += [f"    {name}.append({out})" for name, out in zip(stacks, step_out)]
        results = [f"torch.stack({name}, {self.axis})" for name in stacks] + list(state_in)
        lines.append(f"return {', '.join(results)}")
        params = list(seqs) + list(state_in) + [v for v in dict.fromkeys(captured) if v not in seqs]
        doc = f"{self.block} applied step by step along axis {self.axis} of {', '.join(seqs)}"
        method = c.method(f"scan_{snake(self.block)}", params, doc, lines)
        args = list(seqs) + list(c.inputs[s: s + n]) + [v for v in dict.fromkeys(captured) if v not in seqs]
        return f"{method}({', '.join(args)})"

    def to_onnx(self, tape: Any, c: Lowering) -> list[str]:
        """ONNX Scan: states first, then the scanned inputs; the body reads other values by name."""
        s, n = self.sequences, self.states
        seqs, inits = c.inputs[:s], c.inputs[s: s + n]
        outputs = n + len(self.step_types)
        attrs = {"body": c.bodies[0](), "num_scan_inputs": s, "scan_input_axes": [self.axis] * s,
                 "scan_output_axes": [self.axis] * len(self.step_types)}
        outs = tape.op("Scan", [*inits, *seqs], attrs, outputs=outputs)
        outs = outs if isinstance(outs, list) else [outs]
        return outs[n:] + outs[:n]
