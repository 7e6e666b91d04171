"""The op registry: everything flashc knows about an op lives on its class.

Subclassing :class:`Op` registers the op under its ``name``; the builder, the
checker and both backends only ever ask the class, so adding an op touches
one file and its test. Nothing here imports torch or onnx.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from flashc.diagnostics import FlashError, Span, error
from flashc.ir.graph import WeightSpec
from flashc.ir.types import TensorType

REQUIRED: Any = object()

REGISTRY: dict[str, type[Op]] = {}


# The most layers, parts or copies an op makes in one application: the builder loops over them
# before any weight exists, so `lstm(64, layers = 10**12)` must be refused by its count.
MAX_COUNT = 10_000


@dataclass(frozen=True)
class Param:
    """A hyperparameter: its type, default and allowed values."""

    kind: type | str  # int, float, bool, str, or "ints" (an int or a tuple of ints)
    default: Any = REQUIRED
    choices: tuple | None = None
    doc: str = ""
    minimum: float | None = None  # smallest allowed value (sizes are >= 1)
    maximum: float | None = None  # largest: a count the op loops over at build time stays below MAX_COUNT

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Input:
    """A tensor input of an op."""

    name: str
    optional: bool = False
    variadic: bool = False
    dtypes: tuple[str, ...] | None = None


@dataclass
class Lowering:
    """What a backend hands an op: its input names and types, weight names."""

    inputs: list[str | None]
    types: list[TensorType | None]
    out_types: list[TensorType]
    weights: dict[str, str] = field(default_factory=dict)
    module: str | None = None  # torch: the attribute holding this layer
    # The node's sub-graphs as the backend renders them (torch: a Body of lines; ONNX: a function
    # giving the GraphProto), and, in torch, `method(base, params, doc, lines)` defining a helper
    # method of the module and returning its `self.` name.
    bodies: list[Any] = field(default_factory=list)
    method: Callable[[str, list[str], str, list[str]], str] | None = None


# Mixed-case words that are one word, not two: `ConvBNReLU` -> `conv_bn_relu`, not `conv_bn_re_lu`.
WHOLE_WORDS = {"PReLU": "Prelu", "ReLU": "Relu", "GeLU": "Gelu", "SiLU": "Silu"}


def snake(name: str) -> str:
    """CamelCase -> snake_case, acronym-aware, as a reader would say it.

    A run of capitals is one word (`SEBlock` -> `se_block`, `MLP` -> `mlp`), a
    capital after a digit ends it (`Conv2D` -> `conv2d`), and ReLU/GeLU/SiLU/PReLU
    stay whole (`ConvBNReLU` -> `conv_bn_relu`). Underscores are kept.
    """
    for word, flat in WHOLE_WORDS.items():
        name = name.replace(word, flat)
    name = re.sub(r"(\d)([A-Z])(?![a-z])", lambda m: m[1] + m[2].lower(), name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name)
    return name.lower()


class Op:
    """Base of all ops; subclasses declare schema, shape rule and lowerings."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[tuple[Input, ...]] = (Input("x"),)
    params: ClassVar[dict[str, Param]] = {}
    samples: ClassVar[tuple[dict[str, Any], ...]] = ()
    # Helper classes the generated torch file must define, dependencies first;
    # each is emitted once however many ops ask for it.
    torch_prelude: ClassVar[tuple[str, ...]] = ()
    # Ops that consume a tied weight accept it as a keyword naming a weight path.
    tieable: ClassVar[tuple[str, ...]] = ()
    # Tensor inputs a number may stand in for, and the setting that then holds it:
    # `where(m, x, 0.0)` gives `b_value = 0.0` for the input `b`.
    scalar_inputs: ClassVar[dict[str, str]] = {}
    # Ops whose result varies between train and eval (dropout) are still
    # deterministic in eval, which is what parity tests compare.
    family: ClassVar[str] = "misc"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract"):
            return
        cls.name = cls.__dict__.get("name") or snake(cls.__name__)
        cls.aliases = cls.__dict__.get("aliases", ())  # aliases are not inherited
        for key in (cls.name, *cls.aliases):
            if key in REGISTRY and REGISTRY[key].__qualname__ != cls.__qualname__:
                raise TypeError(f"op name `{key}` is taken by {REGISTRY[key].__qualname__}")
            REGISTRY[key] = cls

    def __init__(self, attrs: dict[str, Any], span: Span) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(attrs)))
        object.__setattr__(self, "span", span)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("ops are immutable")

    def __getattr__(self, key: str) -> Any:
        attrs = self.__dict__.get("attrs", {})
        if key in attrs:
            return attrs[key]
        raise AttributeError(key)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return f"{self.name}({args})"

    # --- checking -----------------------------------------------------------------
    def require(self, condition: bool, message: str, hint: str | None = None) -> None:
        """Fail the check at this op's source span."""
        if not condition:
            raise error(self.span, message, hint)

    def fail(self, message: str, hint: str | None = None) -> FlashError:
        return error(self.span, message, hint)

    def weights(self, *xs: TensorType) -> dict[str, WeightSpec]:
        """The parameters and buffers this op owns, given its input types."""
        return {}

    def infer(self, *xs: TensorType) -> TensorType | tuple[TensorType, ...]:
        """The output type(s); raise via ``require`` on a bad input."""
        raise self.fail(f"`{self.name}` has no shape rule")

    # --- PyTorch ------------------------------------------------------------------
    def torch_module(self, *xs: TensorType) -> str | None:
        """Source of the nn.Module holding this op's weights, or None if stateless."""
        return None

    def to_torch(self, c: Lowering) -> str:
        """A Python expression computing the output from ``c.inputs``.

        An op with a torch module is, by default, a call of that module on its first input.
        """
        if c.module is not None:
            return f"{c.module}({c.inputs[0]})"
        raise self.fail(f"`{self.name}` cannot be lowered to PyTorch")

    # --- ONNX ---------------------------------------------------------------------
    def to_onnx(self, tape: Any, c: Lowering) -> str | list[str]:
        """Emit ONNX nodes on ``tape``; return the output value name(s)."""
        raise self.fail(f"`{self.name}` cannot be lowered to ONNX")


def ints(value: Any, n: int) -> tuple[int, ...]:
    """Expand an int or a tuple of ints to ``n`` ints (kernel sizes, strides)."""
    if isinstance(value, int):
        return (value,) * n
    return tuple(value)
