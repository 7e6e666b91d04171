"""Random sampling layers: the VAE reparameterization step."""

from __future__ import annotations

from typing import Any

from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op


class Reparameterize(Op):
    """z = mu + exp(logvar / 2) * eps with eps ~ N(0, 1): a sample of N(mu, exp(logvar)).

    Writing the sample this way (Kingma and Welling's reparameterization trick)
    keeps it differentiable in `mu` and `logvar`. It is random only in
    training mode. In eval mode, and always in ONNX (an inference graph,
    where a random output would make runs irreproducible), the deterministic
    choice is the mean of the distribution: z = mu.
    """

    family = "sampling"
    inputs = (Input("mu"), Input("logvar"))
    samples = ({"mu": "float32[2, 8]", "logvar": "float32[2, 8]"},)

    def infer(self, mu: TensorType, logvar: TensorType) -> TensorType:
        self.require(
            mu.is_float and mu == logvar,
            f"reparameterize needs float mu and logvar of the same type, got {mu} and {logvar}",
        )
        return mu

    def to_torch(self, c: Lowering) -> str:
        mu, logvar = c.inputs
        return f"({mu} + torch.exp(0.5 * {logvar}) * torch.randn_like({mu}) if self.training else {mu})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Identity", [c.inputs[0]])
