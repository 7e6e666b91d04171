"""Elementwise math: exp, log, sqrt, sin, ..., pow, and clamping (clamp, relu6, hardtanh).

These are the building blocks papers write formulas with: `exp(logit_scale)`
(CLIP), `x |> pow(2) |> mean |> rsqrt` (RMS statistics), `sin`/`cos` position
tables, `relu6` (MobileNetV2). All of them keep their input's shape; they take
float tensors only (an int tensor is cast first), except `abs` and `clamp`,
which also take int32/int64 as torch and ONNX both do.

Each op's `examples` are calls on x: float32[B, T, 64], ids: int64[B, T], img: float32[B, 3, 32, 32]
and mel: float32[B, 80, L]; docs/language.md shows them and tests/test_ops_reference_math.py builds them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flashc.ir.types import TensorType
from flashc.ops.base import Input, Lowering, Op, Param
from flashc.ops.elementwise import broadcast

INTS = ("int32", "int64")
FLOATS = ("float32", "float16", "bfloat16", "float64")
# Inputs drawn from [0.5, 2): log, sqrt, reciprocal and fractional powers stay finite and
# well conditioned, so the parity table compares numbers, not NaNs.
POSITIVE = ({"x": "float32[2, 3, 8]", "positive": True}, {"x": "float32[5, 16]", "positive": True})
ANY_SIGN = ({"x": "float32[2, 3, 8]"}, {"x": "float32[5, 16]"})


class Unary(Op):
    """A float -> float elementwise function: one torch function, one ONNX op."""

    abstract = True
    family = "math"
    samples = ANY_SIGN
    int_ok: ClassVar[bool] = False  # also defined on int32/int64 tensors
    torch_fn: ClassVar[str] = ""
    onnx_op: ClassVar[str] = ""

    def infer(self, x: TensorType) -> TensorType:
        allowed = FLOATS + (INTS if self.int_ok else ())
        self.require(
            x.dtype in allowed,
            f"`{self.name}` needs a {'float or int32/int64' if self.int_ok else 'float'} tensor, got {x}",
            None if self.int_ok else "cast it to a float dtype first with `cast`",
        )
        return x

    def to_torch(self, c: Lowering) -> str:
        return f"{self.torch_fn}({c.inputs[0]})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op(self.onnx_op, [c.inputs[0]])


class Exp(Unary):
    """e^x, e.g. CLIP's learned temperature `exp(logit_scale)`."""

    examples = (
        ('x |> exp', 'e^x'),
        ('exp(parameter(1, init = "constant", value = 2.6593))', "CLIP's temperature, learned in log space"),
    )

    torch_fn = "torch.exp"
    onnx_op = "Exp"


class Log(Unary):
    """The natural logarithm (NaN below 0, -inf at 0, as in torch): `x |> log`."""

    examples = (
        ('x |> abs |> log', 'natural log; NaN below 0 as in torch'),
    )

    samples = POSITIVE
    torch_fn = "torch.log"
    onnx_op = "Log"


class Sqrt(Unary):
    """The square root: `x |> sqrt`."""

    examples = (
        ('x |> pow(2) |> mean(keepdim) |> sqrt', 'root mean square per row'),
    )

    samples = POSITIVE
    torch_fn = "torch.sqrt"
    onnx_op = "Sqrt"


class Rsqrt(Unary):
    """1 / sqrt(x), the scale of RMS normalization: `x |> pow(2) |> mean(keepdim) |> rsqrt`."""

    examples = (
        ('x * (x |> pow(2) |> mean(keepdim) |> rsqrt)', 'RMS normalization without the scale'),
    )

    samples = POSITIVE
    torch_fn = "torch.rsqrt"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        return tape.op("Reciprocal", [tape.op("Sqrt", [c.inputs[0]])])


class Abs(Unary):
    """|x|, on float or integer tensors: `x |> abs`."""

    examples = (
        ('x |> abs', '|x|'),
        ('ids |> abs', 'integers stay int64'),
    )

    int_ok = True
    samples = (*ANY_SIGN, {"x": "int64[2, 5]", "high": 9})
    torch_fn = "torch.abs"
    onnx_op = "Abs"


class Sin(Unary):
    """The sine of x in radians (sinusoidal tables, RoPE): `angles |> sin`."""

    examples = (
        ('arange(T, dtype = float32) |> sin', 'sines of positions (`sinusoidal` makes whole tables)'),
    )

    torch_fn = "torch.sin"
    onnx_op = "Sin"


class Cos(Unary):
    """The cosine of x in radians: `angles |> cos`."""

    examples = (
        ('x |> cos', 'cosine, radians'),
    )

    torch_fn = "torch.cos"
    onnx_op = "Cos"


class Erf(Unary):
    """The Gauss error function (exact GELU is x * (1 + erf(x / sqrt 2)) / 2): `x |> erf`."""

    examples = (
        ('x * 0.5 * (1 + (x * 0.7071067811865476 |> erf))', 'exact GELU written out'),
    )

    torch_fn = "torch.erf"
    onnx_op = "Erf"


class Reciprocal(Unary):
    """1 / x: `x |> reciprocal`."""

    examples = (
        ('x |> abs |> clamp(min = 1e-6) |> reciprocal', '1 / |x|, kept finite'),
    )

    samples = POSITIVE
    torch_fn = "torch.reciprocal"
    onnx_op = "Reciprocal"


class Pow(Op):
    """x raised to a power: `pow(x, 2)`, `pow(x, p)` with a tensor exponent p, or `pow(x, base = 2)` for 2^x.

    The exponent is a number (`exponent`), a float tensor `power` broadcast
    against `x`, or `x` itself when a constant `base` is given. The `**`
    operator lowers to this op. A negative base with a fractional exponent is
    NaN, as in torch.
    """

    examples = (
        ('x |> pow(2)', 'square (the `**` operator lowers here: `x ** 2`)'),
        ('pow(x, base = 2)', '2^x'),
        ('x |> abs |> pow(x)', 'a tensor exponent, broadcast'),
    )

    family = "math"
    inputs = (Input("x"), Input("power", optional=True))
    params = {
        "exponent": Param(float, None, doc="constant exponent: x ** exponent"),
        "base": Param(float, None, doc="constant base: base ** x"),
    }
    samples = (
        {"x": "float32[2, 3, 4]", "exponent": 2.0},
        {"x": "float32[2, 3, 4]", "exponent": 3.0},
        {"x": "float32[2, 3, 4]", "exponent": -0.5, "positive": True},
        {"x": "float32[2, 3, 4]", "power": "float32[2, 3, 4]", "positive": True},
        {"x": "float32[2, 3, 4]", "power": "float32[4]", "positive": True},
        {"x": "float32[2, 3, 4]", "base": 2.0},
    )

    def infer(self, x: TensorType, power: TensorType | None = None) -> TensorType:
        y = power
        given = [n for n, v in (("a tensor exponent", y), ("exponent", self.exponent), ("base", self.base)) if v is not None]
        self.require(len(given) == 1, f"`pow` needs exactly one of a tensor exponent, `exponent` or `base`, got "
                                      f"{' and '.join(given) or 'none'}", "write `pow(x, 2)`, `pow(x, p)` with a tensor p, or `pow(x, base = 2)`")
        for t in (x, y):
            self.require(t is None or t.is_float, f"`pow` needs float tensors, got {t}", "cast it to a float dtype first with `cast`")
        if y is None:
            return x
        self.require(x.dtype == y.dtype, f"`pow` operands have different dtypes: {x} and {y}", "cast one side first")
        return x.with_shape(broadcast(self, x, y))

    def to_torch(self, c: Lowering) -> str:
        x, y = c.inputs
        if y is not None:
            return f"torch.pow({x}, {y})"
        if self.base is not None:
            return f"torch.pow({self.base!r}, {x})"
        return f"torch.pow({x}, {self.exponent!r})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        x, y = c.inputs
        dtype = c.types[0].dtype
        if y is not None:
            return tape.op("Pow", [x, y])
        if self.base is not None:
            return tape.op("Pow", [tape.const(self.base, dtype), x])
        return tape.op("Pow", [x, tape.const(self.exponent, dtype)])


class Bounded(Op):
    """Clip into [low, high]; a missing bound leaves that side open."""

    abstract = True
    family = "math"

    def bounds(self) -> tuple[float | None, float | None]:
        raise NotImplementedError

    def check_bounds(self, x: TensorType) -> None:
        low, high = self.bounds()
        self.require(low is not None or high is not None, f"`{self.name}` needs `min`, `max` or both")
        self.require(low is None or high is None or low <= high, f"`{self.name}` needs min <= max, got {low} > {high}")
        if x.dtype in INTS:
            whole = all(b is None or float(b).is_integer() for b in (low, high))
            given = " and ".join(f"{b:g}" for b in (low, high) if b is not None)
            self.require(whole, f"`{self.name}` of the integer tensor {x} needs whole-number bounds, got {given}",
                         "cast it to a float dtype first with `cast`")

    def _literal(self, value: float, dtype: str) -> str:
        return repr(int(value)) if dtype in INTS else repr(float(value))

    def to_torch(self, c: Lowering) -> str:
        low, high = self.bounds()
        dtype = c.types[0].dtype
        args = [f"{k}={self._literal(v, dtype)}" for k, v in (("min", low), ("max", high)) if v is not None]
        return f"torch.clamp({c.inputs[0]}, {', '.join(args)})"

    def to_onnx(self, tape: Any, c: Lowering) -> str:
        low, high = self.bounds()
        dtype = c.types[0].dtype
        cast = int if dtype in INTS else float
        ins = [c.inputs[0]] + [tape.const(cast(b), dtype) if b is not None else None for b in (low, high)]
        return tape.op("Clip", ins)


class Clamp(Bounded):
    """Clip into [min, max], either bound optional: `x |> clamp(0, 6)`, `x |> clamp(min = 1e-6)`.

    Takes float or int32/int64 tensors (int ones need whole-number bounds).
    """

    examples = (
        ('x |> clamp(-1, 1)', 'both bounds'),
        ('x |> clamp(min = 1e-6)', 'one bound'),
        ('ids |> clamp(0, 9)', 'int64 stays int64'),
    )

    params = {"min": Param(float, None, doc="lower bound (none: open)"), "max": Param(float, None, doc="upper bound (none: open)")}
    samples = (
        {"x": "float32[2, 3, 4]", "min": -0.5, "max": 0.5},
        {"x": "float32[2, 3, 4]", "min": 0.0},
        {"x": "float32[2, 3, 4]", "max": 0.25},
        {"x": "int64[2, 6]", "min": 2, "max": 5, "high": 9},
    )

    def bounds(self) -> tuple[float | None, float | None]:
        return self.min, self.max

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.dtype in FLOATS + INTS, f"`clamp` needs a float or int32/int64 tensor, got {x}")
        self.check_bounds(x)
        return x


class FloatBounded(Bounded):
    """Bounded activations on float tensors."""

    abstract = True

    def infer(self, x: TensorType) -> TensorType:
        self.require(x.is_float, f"`{self.name}` needs a float tensor, got {x}")
        self.check_bounds(x)
        return x


class Relu6(FloatBounded):
    """min(max(0, x), 6), MobileNetV2's activation: `x |> relu6`."""

    examples = (
        ('img |> conv2d(32, 3) |> batchnorm |> relu6', "MobileNetV2's conv-BN-ReLU6"),
    )

    samples = ({"x": "float32[2, 3, 8]", "input_scale": 4.0}, {"x": "float32[5, 16]"})  # input_scale: some inputs above 6

    def bounds(self) -> tuple[float | None, float | None]:
        return 0.0, 6.0

    def to_torch(self, c: Lowering) -> str:
        return f"F.relu6({c.inputs[0]})"


class Hardtanh(FloatBounded):
    """x clipped into [min_val, max_val] (default [-1, 1]): `x |> hardtanh(-2, 2)`."""

    examples = (
        ('x |> hardtanh', 'clip into [-1, 1]'),
        ('x |> hardtanh(0, 6)', 'relu6 by another name'),
    )

    params = {"min_val": Param(float, -1.0), "max_val": Param(float, 1.0)}
    samples = ({"x": "float32[2, 3, 8]", "input_scale": 2.0}, {"x": "float32[5, 16]", "min_val": -0.5, "max_val": 2.0, "input_scale": 3.0})

    def bounds(self) -> tuple[float | None, float | None]:
        return self.min_val, self.max_val

    def infer(self, x: TensorType) -> TensorType:
        self.require(self.min_val < self.max_val, f"`hardtanh` needs min_val < max_val, got {self.min_val} and {self.max_val}")
        return super().infer(x)

    def to_torch(self, c: Lowering) -> str:
        return f"F.hardtanh({c.inputs[0]}, {self.min_val!r}, {self.max_val!r})"
