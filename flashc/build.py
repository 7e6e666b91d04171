"""AST -> checked IR: evaluate the spec, asking the op registry at every call.

Evaluation is symbolic: tensors are IR values, layers and blocks are callables,
numbers are numbers. Each op application infers its output type on the spot,
so the graph that comes out is fully checked. Errors in independent statements
are collected and reported together; a failed statement binds its target to
:data:`POISON` so it does not cause a cascade of follow-on errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flashc import ops as _ops  # noqa: F401  (registers every op)
from flashc.diagnostics import Diagnostic, FlashError, Span, did_you_mean, error
from flashc.ir.dims import Dim, Sym
from flashc.ir.graph import Graph, Node, Value, Weight, WeightSpec
from flashc.ir.types import DTYPES, INPUT_DTYPES, TensorType
from flashc.ops.base import REGISTRY, Op, Param, snake
from flashc.syntax import ast
from flashc.syntax.parser import parse

RESERVED = {"self", "torch", "nn", "F", "math"} | set(keyword.kwlist)
CONSTANTS = {"true": True, "false": False}
BUILTINS = ("repeat", "sequential")
# Attributes every torch.nn.Module already has: a layer may not be named like them.
MODULE_ATTRS = frozenset({
    "training", "forward", "state_dict", "load_state_dict", "parameters", "named_parameters", "buffers",
    "named_buffers", "children", "named_children", "modules", "named_modules", "train", "eval", "to", "cuda",
    "cpu", "apply", "type", "float", "double", "half", "bfloat16", "zero_grad", "register_buffer",
    "register_parameter", "register_module", "add_module", "requires_grad_", "extra_repr", "get_submodule",
    "get_parameter", "get_buffer", "share_memory", "dump_patches", "call_super_init", "input_names",
    "output_names", "flashc_source",
})
def _class_names_taken() -> frozenset[str]:
    """Names the generated torch file defines or imports: a model may not take them."""
    preludes = "\n".join(p for cls in REGISTRY.values() for p in cls.torch_prelude)
    return frozenset({"torch", "nn", "F", "math", *re.findall(r"^class (\w+)", preludes, re.M)})


class Poison:
    """The value of a statement that already failed; using it reports nothing more."""


POISON = Poison()


class _Abort(Exception):
    """Unwind a statement whose error is already recorded."""


@dataclass(frozen=True)
class Tensor:
    value: Value


@dataclass(frozen=True)
class WeightRef:
    path: str
    spec: WeightSpec


@dataclass
class Scope:
    """Names visible in a model or block body, and the layer-path prefix there."""

    vars: dict[str, Any]
    parent: Scope | None
    prefix: str
    owner: object
    counters: dict[str, int] = field(default_factory=dict)

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        raise KeyError(name)

    def names(self) -> set[str]:
        out: set[str] = set()
        scope: Scope | None = self
        while scope is not None:
            out |= set(scope.vars)
            scope = scope.parent
        return out

    def path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fresh(self, base: str) -> str:
        """A layer name unique in this scope: base, base_1, base_2, ..."""
        if base in MODULE_ATTRS:
            base = f"{base}_block"
        n = self.counters.get(base, 0)
        self.counters[base] = n + 1
        return self.path(base if n == 0 else f"{base}_{n}")


@dataclass
class Layer:
    """An op with its hyperparameters bound, not yet applied (``embedding(vocab, d)``)."""

    op: type[Op]
    attrs: dict[str, Any]
    ties: dict[str, WeightRef]
    tensors: dict[str, Any]
    span: Span
    path: str | None = None
    weights: dict[str, str] | None = None  # filled at first application


@dataclass
class Block:
    """A block definition closed over its scope, possibly with some arguments bound."""

    node: ast.BlockDef
    scope: Scope
    bound: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # set when named: every application shares weights
    owner: object = None


@dataclass
class Repeat:
    """`repeat(n, Block)`: n applications, independent weights unless shared."""

    count: int
    block: Block
    shared: bool
    span: Span
    path: str | None = None  # set when named: `blocks = repeat(12, Decoder)`


@dataclass
class Sequential:
    """`sequential(a, b, ...)`: layers and blocks applied in order, weights under `name.0`, `name.1`, ..."""

    items: tuple
    span: Span
    path: str | None = None


@dataclass
class Builder:
    file: str
    sources: dict[str, str]
    overrides: dict[str, Any]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    weights: dict[str, Weight] = field(default_factory=dict)
    layer_ops: dict[str, str] = field(default_factory=dict)
    layer_owner: dict[str, object] = field(default_factory=dict)
    value_names: set[str] = field(default_factory=set)
    value_counters: dict[str, int] = field(default_factory=dict)
    renames: dict[str, str] = field(default_factory=dict)
    dim_sources: dict[str, tuple[Value, int]] = field(default_factory=dict)
    inputs: list[Value] = field(default_factory=list)
    outputs: list[tuple[str, Value]] = field(default_factory=list)
    name_hint: str | None = None  # the layer path for an op applied as it is named

    # --- diagnostics -----------------------------------------------------------------
    def report(self, exc: FlashError) -> None:
        self.diagnostics.extend(exc.diagnostics)

    def fail(self, span: Span, message: str, hint: str | None = None) -> _Abort:
        self.diagnostics.append(Diagnostic(span, message, hint))
        return _Abort()

    # --- values -------------------------------------------------------------------------
    def new_value(self, base: str, type_: TensorType) -> Value:
        base = base if base.isidentifier() and base not in RESERVED else f"v_{base}"
        i = self.value_counters.get(base, 0)
        name = base if i == 0 else f"{base}_{i}"
        while name in self.value_names:
            i += 1
            name = f"{base}_{i}"
        self.value_counters[base] = i + 1
        self.value_names.add(name)
        return Value(name, type_)

    # --- model ----------------------------------------------------------------------------
    def build_model(self, model: ast.Model, blocks: dict[str, tuple[ast.BlockDef, dict]]) -> Scope:
        scope = Scope({}, None, "", owner=object())
        if model.name in _class_names_taken():
            self.diagnostics.append(Diagnostic(model.span, f"`{model.name}` cannot name a model: generated code uses it"))
        libraries: dict[int, Scope] = {}

        def library_scope(lib: dict[str, Any]) -> Scope:
            """Imported blocks see the blocks of their own file, then the model's names."""
            if id(lib) not in libraries:
                libraries[id(lib)] = Scope({}, scope, "", scope.owner)
                for n, (nd, own) in lib.items():
                    libraries[id(lib)].vars[n] = Block(nd, library_scope(own))
            return libraries[id(lib)]

        for name, (node, lib) in blocks.items():
            scope.vars[name] = Block(node, library_scope(lib))
        declared = {p.name for p in model.params}
        for key in self.overrides:
            if key not in declared:
                hint = did_you_mean(key, declared) or f"the parameters of {model.name} are: {', '.join(sorted(declared)) or 'none'}"
                self.diagnostics.append(Diagnostic(model.span, f"unknown parameter `{key}` for model {model.name}", hint))
        for p in model.params:
            try:
                default = self.constant(self.eval(p.default, scope), p.default.span, f"parameter `{p.name}`")
                scope.vars[p.name] = default
                if p.name in self.overrides:
                    scope.vars[p.name] = self.override(p, default, self.overrides[p.name])
            except _Abort:
                scope.vars[p.name] = POISON
        self.run_body(model.body, scope)
        if not self.outputs and not any(isinstance(s, ast.Output) for s in model.body):
            self.diagnostics.append(
                Diagnostic(model.span, f"model {model.name} declares no output", "add `output y = ...`")
            )
        return scope

    def override(self, p: ast.ParamDecl, default: Any, value: Any) -> Any:
        """An overriding value must have the kind of the default it replaces."""
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(default, bool) and isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float))
            value = float(value) if ok else value
        else:
            ok = type(value) is type(default)
        if not ok:
            raise self.fail(p.span, f"cannot set `{p.name}` to {value!r}: it is {describe(default)}, so the new value must be of the same kind")
        return value

    def run_body(self, body: tuple, scope: Scope) -> list[Any] | None:
        """Run statements; return the values of a `return`, if any."""
        returned = None
        for stmt in body:
            try:
                if isinstance(stmt, ast.Return):
                    returned = [self.eval(v, scope) for v in stmt.values]
                else:
                    self.statement(stmt, scope)
            except _Abort:
                if isinstance(stmt, ast.Assign):
                    for t in stmt.targets:
                        scope.vars[t] = POISON
                elif isinstance(stmt, (ast.Output, ast.InputDecl)):
                    scope.vars[stmt.name] = POISON
                elif isinstance(stmt, ast.Return):
                    returned = [POISON]
            except FlashError as exc:
                self.report(exc)
        return returned

    def statement(self, stmt: Any, scope: Scope) -> None:
        if isinstance(stmt, ast.InputDecl):
            self.declare_input(stmt, scope)
        elif isinstance(stmt, ast.BlockDef):
            scope.vars[stmt.name] = Block(stmt, scope)
        elif isinstance(stmt, ast.Assign):
            self.assign(stmt, scope)
        elif isinstance(stmt, ast.Output):
            self.output(stmt, scope)

    def declare_input(self, stmt: ast.InputDecl, scope: Scope) -> None:
        if scope.parent is not None:
            raise self.fail(stmt.span, "inputs are declared in the model, not inside a block")
        type_ = self.tensor_type(stmt.type, scope)
        value = self.new_value(stmt.name, type_)
        if value.name != stmt.name:
            raise self.fail(stmt.span, f"input name `{stmt.name}` is reserved or already used")
        for axis, d in enumerate(type_.shape):
            if isinstance(d, Sym) and d.op == "name":
                self.dim_sources.setdefault(d.args[0], (value, axis))
                scope.vars.setdefault(d.args[0], d)
        self.inputs.append(value)
        scope.vars[stmt.name] = Tensor(value)

    def tensor_type(self, t: ast.TypeExpr, scope: Scope) -> TensorType:
        if t.dtype not in DTYPES:
            raise self.fail(t.dtype_span, f"unknown dtype `{t.dtype}`", did_you_mean(t.dtype, DTYPES))
        if t.dtype not in INPUT_DTYPES:
            raise self.fail(t.dtype_span, f"inputs may be {', '.join(INPUT_DTYPES)}; got `{t.dtype}`",
                            "flashc computes in float32 (weights are float32)")
        dims: list[Dim] = []
        for d in t.dims:
            if isinstance(d, ast.Name) and not self.defined(d.id, scope):
                dims.append(Sym.name(d.id))
                continue
            value = self.eval(d, scope)
            if isinstance(value, bool) or not isinstance(value, (int, Sym)):
                raise self.fail(d.span, f"a dimension must be a whole number or a name, got {describe(value)}")
            if isinstance(value, int) and value < 1:
                raise self.fail(d.span, f"a dimension must be at least 1, got {value}")
            dims.append(value)
        return TensorType(t.dtype, tuple(dims))

    def defined(self, name: str, scope: Scope) -> bool:
        try:
            scope.lookup(name)
            return True
        except KeyError:
            return name in CONSTANTS

    def assign(self, stmt: ast.Assign, scope: Scope) -> None:
        if len(stmt.targets) == 1 and self.makes_weights_at_once(stmt.value, scope):
            self.name_hint = self.binding_path(stmt.targets[0], scope)  # `cls = parameter(1, 1, d)`
        try:
            value = self.eval(stmt.value, scope)
        finally:
            self.name_hint = None
        if len(stmt.targets) > 1:
            items = value if isinstance(value, tuple) else (value,)
            if len(items) != len(stmt.targets):
                raise self.fail(stmt.span, f"{len(stmt.targets)} names on the left but {len(items)} values on the right")
            for name, item in zip(stmt.targets, items):
                self.bind(name, item, scope, stmt.span)
        elif isinstance(value, tuple) and value and all(isinstance(v, Tensor) for v in value):
            names = ", ".join(f"y{i}" for i in range(len(value)))
            raise self.fail(stmt.span, f"the right side gives {len(value)} tensors; unpack them: `{names} = ...`")
        else:
            self.bind(stmt.targets[0], value, scope, stmt.span)

    def makes_weights_at_once(self, e: Any, scope: Scope) -> bool:
        """A call of an op with no tensor inputs (`parameter`) is applied where it stands."""
        if not (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and not self.defined(e.func.id, scope)):
            return False
        cls = REGISTRY.get(e.func.id)
        return cls is not None and not any(not i.optional for i in cls.inputs)

    def bind(self, name: str, value: Any, scope: Scope, span: Span | None = None) -> None:
        if isinstance(value, (Layer, Block, Repeat, Sequential)) and name in MODULE_ATTRS:
            raise self.fail(span or Span.unknown(self.file), f"`{name}` cannot name a layer: torch modules already use it",
                            f"try `{name}_layer`")
        if isinstance(value, Layer) and value.path is None:
            value.path = self.claim_path(self.binding_path(name, scope), scope.owner)
        elif isinstance(value, Block) and value.path is None and value.node.name != name:
            path = self.claim_path(self.binding_path(name, scope), scope.owner)
            value = replace(value, path=path, owner=(scope.owner, path))
        elif isinstance(value, (Repeat, Sequential)) and value.path is None:
            value = replace(value, path=self.claim_path(self.binding_path(name, scope), scope.owner))
        elif isinstance(value, Tensor):
            local = name if not scope.prefix else f"{scope.prefix.replace('.', '_')}_{name}"
            self.renames.setdefault(value.value.name, local)
        scope.vars[name] = value

    @staticmethod
    def binding_path(name: str, scope: Scope) -> str:
        """The n-th layer bound to `name` in a scope is `name`, `name_1`, ...: the same on every application."""
        key = "=" + name
        n = scope.counters.get(key, 0)
        scope.counters[key] = n + 1
        return scope.path(name if n == 0 else f"{name}_{n}")

    def claim_path(self, path: str, owner: object) -> str:
        """Reserve a layer path for ``owner``; a clash with another owner gets a suffix."""
        for i in itertools.count():
            candidate = path if i == 0 else f"{path}_{i}"
            if self.layer_owner.setdefault(candidate, owner) == owner:
                return candidate
        raise AssertionError("unreachable")

    def output(self, stmt: ast.Output, scope: Scope) -> None:
        if scope.parent is not None:
            raise self.fail(stmt.span, "outputs are declared in the model; a block uses `return`")
        if stmt.value is None:
            value = self.lookup(ast.Name(stmt.span, stmt.name), scope)
        else:
            value = self.eval(stmt.value, scope)
        if isinstance(value, Poison):
            raise _Abort()
        if not isinstance(value, Tensor):
            raise self.fail(stmt.span, f"output `{stmt.name}` must be a tensor, got {describe(value)}")
        if any(n == stmt.name for n, _ in self.outputs):
            raise self.fail(stmt.span, f"output `{stmt.name}` is declared twice")
        if any(v.name == stmt.name for v in self.inputs):
            raise self.fail(stmt.span, f"output `{stmt.name}` has the name of an input", "give the output its own name")
        scope.vars[stmt.name] = value
        self.renames[value.value.name] = stmt.name
        self.outputs.append((stmt.name, value.value))

    # --- expressions --------------------------------------------------------------------
    def eval(self, e: Any, scope: Scope) -> Any:
        value = self._eval(e, scope)
        if isinstance(value, Poison):
            raise _Abort()
        return value

    def _eval(self, e: Any, scope: Scope) -> Any:
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.String):
            return e.value
        if isinstance(e, ast.Name):
            return self.lookup(e, scope)
        if isinstance(e, ast.Tuple):
            return tuple(self.eval(i, scope) for i in e.items)
        if isinstance(e, ast.Neg):
            return self.arith("-", 0, self.eval(e.operand, scope), e.span, negate=True)
        if isinstance(e, ast.BinOp):
            return self.arith(e.op, self.eval(e.left, scope), self.eval(e.right, scope), e.span)
        if isinstance(e, ast.Attr):
            return self.attribute(e, scope)
        if isinstance(e, ast.Call):
            return self.call(e, scope, None)
        if isinstance(e, ast.Pipe):
            left = self.eval(e.left, scope)
            piped = left if isinstance(left, tuple) else (left,)
            if isinstance(e.right, ast.Call):
                return self.call(e.right, scope, [(v, e.left.span) for v in piped])
            return self.apply(self.callee(e.right, scope), [(v, e.left.span) for v in piped], {}, e.right.span, scope)
        raise self.fail(getattr(e, "span", Span.unknown(self.file)), "unsupported expression")

    def lookup(self, e: ast.Name, scope: Scope) -> Any:
        with contextlib.suppress(KeyError):
            return scope.lookup(e.id)
        if e.id in CONSTANTS:
            return CONSTANTS[e.id]
        if e.id in REGISTRY:
            return Layer(REGISTRY[e.id], {}, {}, {}, e.span)
        candidates = scope.names() | set(REGISTRY) | set(CONSTANTS) | set(BUILTINS)
        raise self.fail(e.span, f"undefined name `{e.id}`", did_you_mean(e.id, candidates))

    def attribute(self, e: ast.Attr, scope: Scope) -> Any:
        obj = self.eval(e.obj, scope)
        if isinstance(obj, Layer):
            if obj.weights is None:
                raise self.fail(e.span, f"layer `{obj.path}` has no weights yet", "apply the layer before tying its weights")
            if e.name not in obj.weights:
                raise self.fail(
                    e.span,
                    f"layer `{obj.path}` has no weight `{e.name}`",
                    did_you_mean(e.name, obj.weights) or f"its weights are: {', '.join(obj.weights)}",
                )
            path = obj.weights[e.name]
            return WeightRef(path, self.weights[path].spec)
        if isinstance(obj, Tensor) and e.name in ("shape", "rank"):
            t = obj.value.type
            return t.shape if e.name == "shape" else t.rank
        raise self.fail(e.span, f"{describe(obj)} has no attribute `{e.name}`")

    def arith(self, op: str, a: Any, b: Any, span: Span, negate: bool = False) -> Any:
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            return self.tensor_arith(op, a, b, span, negate)
        numeric = (int, float, Sym)
        if not (isinstance(a, numeric) and isinstance(b, numeric)) or isinstance(a, bool) or isinstance(b, bool):
            raise self.fail(span, f"cannot apply `{op}` to {describe(a)} and {describe(b)}")
        if isinstance(a, Sym) or isinstance(b, Sym):
            if op == "/" or isinstance(a, float) or isinstance(b, float):
                raise self.fail(span, "symbolic dimensions support only + - * and //")
            return {"+": a + b, "-": a - b, "*": a * b, "//": a // b}[op]
        if op in ("/", "//") and b == 0:
            raise self.fail(span, "division by zero")
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0, "//": a // b if b else 0}[op]

    def tensor_arith(self, op: str, a: Any, b: Any, span: Span, negate: bool) -> Tensor:
        if negate:
            return self.emit(REGISTRY["neg"], {}, [b.value], span, scope=None)
        names = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
        if op not in names:
            raise self.fail(span, f"`{op}` is not defined for tensors", "use `/` for tensors")
        cls = REGISTRY[names[op]]
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return self.emit(cls, {}, [a.value, b.value], span, scope=None)
        tensor, other, first = (a, b, False) if isinstance(a, Tensor) else (b, a, True)
        if isinstance(other, bool) or not isinstance(other, (int, float)):
            raise self.fail(span, f"cannot apply `{op}` to {describe(a)} and {describe(b)}")
        return self.emit(cls, {"scalar": float(other), "scalar_first": first}, [tensor.value, None], span, scope=None)

    # --- calls ----------------------------------------------------------------------------
    def callee(self, e: Any, scope: Scope) -> Any:
        if isinstance(e, ast.Name) and e.id in BUILTINS and not self.defined(e.id, scope):
            return e.id
        return self.eval(e, scope)

    def call(self, e: ast.Call, scope: Scope, piped: list[tuple[Any, Span]] | None) -> Any:
        """Evaluate arguments to (value, span) pairs; a piped value comes first."""
        func = self.callee(e.func, scope)
        positional: list[tuple[Any, Span]] = list(piped or ())
        keywords: dict[str, Any] = {}
        flags = self.flag_names(func)
        for arg in e.args:
            if arg.name is not None:
                if arg.name in keywords:
                    raise self.fail(arg.span, f"keyword `{arg.name}` given twice")
                keywords[arg.name] = (self.eval(arg.value, scope), arg.span)
            elif isinstance(arg.value, ast.Name) and arg.value.id in flags and not self.defined(arg.value.id, scope):
                keywords[arg.value.id] = (True, arg.span)
            else:
                positional.append((self.eval(arg.value, scope), arg.span))
        return self.apply(func, positional, keywords, e.span, scope)

    @staticmethod
    def flag_names(func: Any) -> set[str]:
        """Boolean parameters a bare name can switch on: `attention(heads, causal)`."""
        if isinstance(func, Layer):
            return {k for k, p in func.op.params.items() if p.kind is bool}
        if func == "repeat":
            return {"shared"}
        return set()

    def apply(self, func: Any, args: list[tuple[Any, Span]], kwargs: dict, span: Span, scope: Scope) -> Any:
        """Call a layer, block, repeat, sequential or builtin with (value, span) arguments."""
        if isinstance(func, Layer):
            return self.apply_layer(func, args, kwargs, span, scope)
        if isinstance(func, Block):
            return self.apply_block(func, args, kwargs, span, scope)
        if isinstance(func, Repeat):
            return self.apply_repeat(func, args, kwargs, span, scope)
        if isinstance(func, Sequential):
            return self.apply_sequential(func, args, kwargs, span, scope)
        if func == "repeat":
            return self.make_repeat(args, kwargs, span, scope)
        if func == "sequential":
            return self.make_sequential(args, kwargs, span, scope)
        raise self.fail(span, f"{describe(func)} cannot be called")

    # layers
    def apply_layer(self, layer: Layer, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        cls = layer.op
        if layer.weights is not None or layer.path is not None:
            tensors, attrs, ties = dict(layer.tensors), dict(layer.attrs), dict(layer.ties)
            extra_tensors, extra_attrs, extra_ties = self.bind_args(cls, args, kwargs, span, tensors_only=True)
            tensors.update(extra_tensors)
        else:
            tensors, attrs, ties = self.bind_args(cls, args, kwargs, span)
            tensors = {**layer.tensors, **tensors}
            attrs = {**layer.attrs, **attrs}
            ties = {**layer.ties, **ties}
        required = [i.name for i in cls.inputs if not i.optional and not i.variadic]
        if not tensors and (required or any(i.variadic for i in cls.inputs)):
            return Layer(cls, attrs, ties, tensors, span, path=layer.path)
        missing = [n for n in required if n not in tensors]
        if missing and not any(isinstance(a[0], Tensor) for a in args):  # `cross = attention(heads, kv = m)`
            return Layer(cls, attrs, ties, tensors, span, path=layer.path)
        if missing:
            raise self.fail(span, f"`{cls.name}` is missing its input `{missing[0]}`")
        attrs = self.complete_attrs(cls, attrs, span)
        attrs, tensors = self.resolve_dims(cls, attrs, tensors, span)
        ordered: list[Value | None] = []
        for inp in cls.inputs:
            got = tensors.get(inp.name)
            if inp.variadic:
                ordered.extend(t.value for t in (got or []))
            else:
                ordered.append(got.value if got is not None else None)
        return self.emit(cls, attrs, ordered, span, scope, layer=layer, ties=ties)

    def bind_args(self, cls: type[Op], args: list, kwargs: dict, span: Span, tensors_only: bool = False) -> tuple:
        tensors: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        ties: dict[str, WeightRef] = {}
        slots = [i for i in cls.inputs]
        params = [k for k in cls.params]
        param_i = 0
        for value, aspan in args:
            if isinstance(value, Tensor) and slots:
                slot = slots[0]
                if slot.variadic:
                    tensors.setdefault(slot.name, []).append(value)
                else:
                    tensors[slot.name] = value
                    slots.pop(0)
                continue
            if isinstance(value, Tensor):
                raise self.fail(aspan, f"`{cls.name}` takes {len(cls.inputs)} tensor input(s), got one more")
            if tensors_only:
                raise self.fail(aspan, f"layer `{cls.name}` already has its settings; pass only tensors here")
            slots = [s for s in slots if s.variadic]  # a setting ends the tensor arguments
            while param_i < len(params) and params[param_i] in attrs and cls.params[params[param_i]].kind != "shape":
                param_i += 1
            if param_i >= len(params):
                raise self.fail(aspan, f"`{cls.name}` takes at most {len(cls.params)} setting(s), got {describe(value)} as one more")
            name = params[param_i]
            if cls.params[name].kind == "shape":  # collects every remaining positional argument
                attrs.setdefault(name, []).append((value, aspan))
                continue
            attrs[name] = (value, aspan)
            param_i += 1
        for key, (value, aspan) in kwargs.items():
            inputs = {i.name: i for i in cls.inputs}
            if key in inputs:
                if not isinstance(value, Tensor):
                    raise self.fail(aspan, f"`{cls.name}` input `{key}` must be a tensor, got {describe(value)}")
                tensors[key] = [value] if inputs[key].variadic else value
            elif key in cls.tieable:
                if not isinstance(value, WeightRef):
                    raise self.fail(aspan, f"`{key} =` ties a weight, e.g. `{key} = other.{key}`; got {describe(value)}")
                ties[key] = value
            elif key in cls.params and not tensors_only:
                attrs[key] = (value, aspan)
            else:
                known = list(cls.params) + [i.name for i in cls.inputs] + list(cls.tieable)
                raise self.fail(
                    aspan,
                    f"`{cls.name}` has no argument `{key}`",
                    did_you_mean(key, known) or (f"its arguments are: {', '.join(known)}" if known else None),
                )
        checked = {k: self.check_param(cls, k, v) for k, v in attrs.items()}
        return tensors, checked, ties

    def check_param(self, cls: type[Op], name: str, given: Any) -> Any:
        param: Param = cls.params[name]
        if param.kind == "shape":
            pairs = given if isinstance(given, list) else [given]
            dims = []
            for value, aspan in pairs:
                for v in value if isinstance(value, tuple) else (value,):
                    if isinstance(v, bool) or not isinstance(v, (int, Sym)):
                        raise self.fail(aspan, f"`{cls.name}` {name} must be whole numbers or dims, got {describe(v)}")
                    dims.append(v)
            return tuple(dims)
        value, aspan = given
        ok = {
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            bool: isinstance(value, bool),
            str: isinstance(value, str),
            "ints": (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
            or (isinstance(value, str) and param.choices is not None and value in param.choices),
            "dim": isinstance(value, (int, Sym)) and not isinstance(value, bool),
            "floats": isinstance(value, tuple) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
            "name": isinstance(value, str),
        }[param.kind]
        if value is None and param.default is None:
            ok = True
        if not ok:
            kind = param.kind if isinstance(param.kind, str) else param.kind.__name__
            words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
                     "ints": "a whole number or a tuple of them", "dim": "a whole number or a dimension",
                     "floats": "a tuple of numbers", "name": "a name"}
            options = f", or {' or '.join(repr(c) for c in param.choices)}" if param.choices and kind == "ints" else ""
            hint = did_you_mean(str(value), [str(c) for c in param.choices]) if param.choices else None
            raise self.fail(aspan, f"`{cls.name}` {name} must be {words[kind]}{options}, got {describe(value)}", hint)
        if param.choices is not None and value not in param.choices and (param.kind != "ints" or isinstance(value, str)):
            raise self.fail(
                aspan,
                f"`{cls.name}` {name} must be one of {', '.join(repr(c) for c in param.choices)}, got {value!r}",
                did_you_mean(str(value), [str(c) for c in param.choices]),
            )
        if param.minimum is not None and isinstance(value, (int, float)) and value < param.minimum:
            raise self.fail(aspan, f"`{cls.name}` {name} must be at least {param.minimum:g}, got {value}")
        if param.kind is float and value is not None:
            value = float(value)
        return value

    def complete_attrs(self, cls: type[Op], attrs: dict, span: Span) -> dict:
        out = {}
        for name, param in cls.params.items():
            if name in attrs:
                out[name] = attrs[name]
            elif param.required:
                raise self.fail(span, f"`{cls.name}` needs `{name}`" + (f" ({param.doc})" if param.doc else ""))
            else:
                out[name] = param.default
        return out

    def resolve_dims(self, cls: type[Op], attrs: dict, tensors: dict, span: Span) -> tuple[dict, dict]:
        """A `dim` parameter with a symbolic value reads it at run time from its source input."""
        for name, param in cls.params.items():
            value = attrs.get(name)
            if param.kind == "dim" and isinstance(value, Sym):
                if value.op != "name" or value.args[0] not in self.dim_sources:
                    raise self.fail(span, f"`{cls.name}` needs a number or a dimension of an input, got {value}")
                source, axis = self.dim_sources[value.args[0]]
                tensors = {**tensors, "source": Tensor(source)}
                attrs = {**attrs, "source_axis": axis}
        return attrs, tensors

    def emit(self, cls: type[Op], attrs: dict, inputs: list[Value | None], span: Span, scope: Scope | None,
             layer: Layer | None = None, ties: dict[str, WeightRef] | None = None) -> Any:
        """Create one node: infer its type, create or reuse its weights."""
        if scope is None:
            attrs = self.complete_attrs(cls, attrs, span)
        op = cls(attrs, span)
        types = [v.type if v is not None else None for v in inputs]
        for inp, v in zip(cls.inputs, inputs):
            if v is not None and inp.dtypes and v.type.dtype not in inp.dtypes:
                raise self.fail(span, f"`{cls.name}` input `{inp.name}` must be {' or '.join(inp.dtypes)}, got {v.type}")
        try:
            result = op.infer(*types)
            specs = op.weights(*types)
            module = op.torch_module(*types)
        except FlashError as exc:
            self.report(exc)
            raise _Abort() from None
        ties = ties or {}
        for local, ref in ties.items():
            if local not in specs:
                raise self.fail(span, f"`{cls.name}` has no weight `{local}` to tie")
            if ref.spec.shape != specs[local].shape:
                raise self.fail(
                    span,
                    f"cannot tie `{local}` to `{ref.path}`: {cls.name} needs shape {list(specs[local].shape)}, "
                    f"`{ref.path}` has {list(ref.spec.shape)}",
                )
        path = None
        weight_map: dict[str, str] = {}
        if specs or module is not None:
            path = self.layer_path(cls, layer, scope, span)
            for local, spec in specs.items():
                full = ties[local].path if local in ties else f"{path}.{local}"
                weight_map[local] = full
                if local in ties:
                    continue
                existing = self.weights.get(full)
                if existing is None:
                    self.weights[full] = Weight(full, spec, span)
                elif existing.spec != spec:
                    raise self.fail(
                        span,
                        f"layer `{path}` shares weights but is applied to a different shape: "
                        f"`{local}` needs {list(spec.shape)}, it has {list(existing.spec.shape)}",
                    )
            previous = self.layer_ops.setdefault(path, cls.name)
            if previous != cls.name:
                raise self.fail(span, f"layer `{path}` is a {previous}, not a {cls.name}")
            if layer is not None and layer.path is not None:
                layer.weights = dict(weight_map)
        results = result if isinstance(result, tuple) else (result,)
        base = cls.name
        outs = tuple(self.new_value(base, t) for t in results)
        self.nodes.append(Node(op, tuple(inputs), outs, path, tuple(weight_map.items()), span))
        tensors = tuple(Tensor(o) for o in outs)
        return tensors if isinstance(result, tuple) else tensors[0]

    def layer_path(self, cls: type[Op], layer: Layer | None, scope: Scope | None, span: Span) -> str:
        if layer is not None and layer.path is not None:
            return layer.path
        if scope is None:
            raise self.fail(span, f"`{cls.name}` needs a layer name here")
        if self.name_hint is not None:
            hint, self.name_hint = self.name_hint, None
            return self.claim_path(hint, scope.owner)
        return self.claim_path(scope.fresh(cls.name), scope.owner)

    # blocks
    def apply_block(self, block: Block, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        params = block.node.params
        bound = dict(block.bound)
        names = [p.name for p in params]
        free = [n for n in names if n not in bound]
        if len(args) > len(free):
            raise self.fail(span, f"block {block.node.name} takes {len(names)} argument(s), got {len(args) + len(bound)}")
        for (value, _), name in zip(args, free):
            bound[name] = value
        for key, (value, aspan) in kwargs.items():
            if key not in names:
                raise self.fail(aspan, f"block {block.node.name} has no parameter `{key}`", did_you_mean(key, names))
            bound[key] = value
        missing = [p for p in params if p.name not in bound and p.default is None]
        if missing:
            return replace(block, bound=bound)
        if block.path is not None:
            prefix, owner = block.path, block.owner
        else:
            prefix = scope.fresh(snake(block.node.name))
            owner = (scope.owner, prefix)
            prefix = self.claim_path(prefix, owner)
        return self.run_block(block, bound, prefix, owner, span)

    def run_block(self, block: Block, bound: dict, prefix: str, owner: object, span: Span) -> Any:
        inner = Scope({}, block.scope, prefix, owner)
        for p in block.node.params:
            value = bound[p.name] if p.name in bound else self.eval(p.default, inner)
            if isinstance(value, (Layer, Block, Repeat, Sequential)) and value.path is None:
                # a layer handed to the block takes the parameter's name: `downsample` -> `layer2.0.downsample`
                self.bind(p.name, replace(value), inner, span)
            else:
                inner.vars[p.name] = value
        returned = self.run_body(block.node.body, inner)
        if returned is None:
            raise self.fail(block.node.span, f"block {block.node.name} has no `return`")
        if any(isinstance(r, Poison) for r in returned):
            raise _Abort()
        return returned[0] if len(returned) == 1 else tuple(returned)

    # sequential
    def make_sequential(self, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        tensors = [a for a in args if isinstance(a[0], Tensor)]
        items = [a for a in args if not isinstance(a[0], Tensor)]
        if kwargs:
            key, (_, aspan) = next(iter(kwargs.items()))
            raise self.fail(aspan, f"sequential has no argument `{key}`", "it takes the layers and blocks to chain")
        for value, aspan in items:
            if not isinstance(value, (Layer, Block, Repeat, Sequential)):
                raise self.fail(aspan, f"sequential chains layers and blocks, got {describe(value)}")
        if not items:
            raise self.fail(span, "sequential needs at least one layer or block")
        seq = Sequential(tuple(v for v, _ in items), span)
        return self.apply_sequential(seq, tensors, {}, span, scope) if tensors else seq

    def apply_sequential(self, seq: Sequential, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        if kwargs or len(args) != 1 or not isinstance(args[0][0], Tensor):
            raise self.fail(span, "a sequential is applied to one tensor")
        if seq.path is not None:
            container, owner = seq.path, scope.owner
        else:
            container = scope.fresh("sequential")
            owner = (scope.owner, container)
            container = self.claim_path(container, owner)
        x = args[0][0]
        for i, item in enumerate(seq.items):
            path = f"{container}.{i}"
            if isinstance(item, Block):
                free = [p.name for p in item.node.params if p.name not in item.bound]
                if not free:
                    raise self.fail(span, f"block {item.node.name} takes no free argument to chain")
                bound = {**item.bound, free[0]: x}
                if item.path is not None:
                    path, item_owner = item.path, item.owner
                else:
                    item_owner = (owner, i)
                    self.claim_path(path, item_owner)
                x = self.run_block(item, bound, path, item_owner, span)
            else:
                if item.path is None:
                    item = replace(item, path=self.claim_path(path, owner))
                x = self.apply(item, [(x, span)], {}, span, scope)
            if not isinstance(x, Tensor):
                raise self.fail(span, f"each step of a sequential must give one tensor, got {describe(x)}")
        return x

    # repeat
    def make_repeat(self, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        tensors = [a for a in args if isinstance(a[0], Tensor)]
        rest = [a for a in args if not isinstance(a[0], Tensor)]
        if len(rest) != 2:
            raise self.fail(span, "repeat takes a count and a block: `repeat(n, Block)`")
        (count, cspan), (block, bspan) = rest
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise self.fail(cspan, f"repeat count must be a whole number >= 1, got {describe(count)}")
        if not isinstance(block, (Block, Layer)):
            raise self.fail(bspan, f"repeat needs a block or a layer, got {describe(block)}")
        shared = False
        for key, (value, aspan) in kwargs.items():
            if key != "shared" or not isinstance(value, bool):
                raise self.fail(aspan, f"repeat has no argument `{key}`" if key != "shared" else "shared must be true or false")
            shared = value
        if isinstance(block, Layer):
            block = self.layer_as_block(block, span)
        free = [p for p in block.node.params if p.name not in block.bound]
        if not free:
            raise self.fail(bspan, f"repeat needs a block that takes a tensor; {block.node.name} takes no free argument")
        rep = Repeat(count, block, shared, span)
        if not tensors:
            return rep
        return self.apply_repeat(rep, tensors, {}, span, scope)

    def layer_as_block(self, layer: Layer, span: Span) -> Block:
        """`repeat(3, linear(8))`: wrap an op in a one-line block."""
        body = ast.Pipe(span, ast.Name(span, "x"), ast.Name(span, "_layer"))
        node = ast.BlockDef(span, layer.op.name, (ast.ParamDecl(span, "x", None),), (ast.Return(span, (body,)),))
        scope = Scope({"_layer": replace(layer, path=None, weights=None)}, None, "", object())
        return Block(node, scope)

    def apply_repeat(self, rep: Repeat, args: list, kwargs: dict, span: Span, scope: Scope) -> Any:
        if kwargs or len(args) != 1 or not isinstance(args[0][0], Tensor):
            raise self.fail(span, "a repeat is applied to one tensor")
        if rep.path is not None:
            container, owner = rep.path, scope.owner
        else:
            container = scope.fresh(snake(rep.block.node.name))
            owner = (scope.owner, container)
            container = self.claim_path(container, owner)
        x = args[0][0]
        first = next(p.name for p in rep.block.node.params if p.name not in rep.block.bound)
        for i in range(rep.count):
            prefix = container if rep.shared else f"{container}.{i}"
            x = self.run_block(rep.block, {**rep.block.bound, first: x}, prefix, owner if rep.shared else (owner, i), span)
            if not isinstance(x, Tensor):
                raise self.fail(span, f"repeat needs a block that returns one tensor, {rep.block.node.name} returns {describe(x)}")
        return x

    def constant(self, value: Any, span: Span, what: str) -> Any:
        if isinstance(value, (bool, int, float, str)) or (isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value)):
            return value
        raise self.fail(span, f"{what} must be a number, string or tuple, got {describe(value)}")

    # --- result ---------------------------------------------------------------------------
    def finish(self, model: ast.Model, scope: Scope, params: dict[str, Any], source: str) -> Graph:
        names = self.final_names()
        def rn(v: Value | None) -> Value | None:
            return None if v is None else Value(names.get(v.name, v.name), v.type)
        nodes = tuple(
            replace(n, inputs=tuple(rn(v) for v in n.inputs), outputs=tuple(rn(v) for v in n.outputs))
            for n in self.nodes
        )
        return Graph(
            name=model.name,
            params=params,
            inputs=tuple(rn(v) for v in self.inputs),
            nodes=nodes,
            outputs=tuple((n, rn(v)) for n, v in self.outputs),
            weights=dict(self.weights),
            span=model.span,
            source_hash=hashlib.sha256(source.encode()).hexdigest(),
            layers=dict(self.layer_ops),
        )

    def final_names(self) -> dict[str, str]:
        """Give values the names the user chose, suffixed where needed to stay unique."""
        taken = {v.name for v in self.inputs}
        out: dict[str, str] = {}
        for node in self.nodes:
            for value in node.outputs:
                wanted = self.renames.get(value.name, value.name)
                candidate, i = wanted, 1
                while candidate in taken or candidate in RESERVED:
                    candidate, i = f"{wanted}_{i}", i + 1
                taken.add(candidate)
                out[value.name] = candidate
        return out


def describe(value: Any) -> str:
    """A short, user-facing description of an evaluated value."""
    if isinstance(value, Tensor):
        return f"a tensor {value.value.type}"
    if isinstance(value, Layer):
        return f"the layer `{value.path or value.op.name}`"
    if isinstance(value, Block):
        missing = [p.name for p in value.node.params if p.name not in value.bound and p.default is None]
        return f"the block {value.node.name}" + (f" (not applied: `{missing[0]}` is missing)" if missing else "")
    if isinstance(value, Repeat):
        return "a repeat"
    if isinstance(value, Sequential):
        return "a sequential"
    if isinstance(value, WeightRef):
        return f"the weight `{value.path}`"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float, Sym)):
        return f"the number {value}" if not isinstance(value, Sym) else f"the dimension {value}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return type(value).__name__


# --- entry points ---------------------------------------------------------------------------

def read_source(path: str | Path) -> str:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(Span.unknown(str(path)), f"no such file: {path}") from None
    except IsADirectoryError:
        raise error(Span.unknown(str(path)), f"{path} is a directory, not a .flash file") from None
    except OSError as exc:
        raise error(Span.unknown(str(path)), f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(Span(str(path), line, col, line, col + 1), "the file is not valid UTF-8 text") from None


def collect_blocks(module: ast.Module, base: Path, sources: dict[str, str], seen: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Blocks made visible by `import`, as (name, (BlockDef, library of its file)) pairs.

    A block's library maps every block name visible in the file that defines it,
    so an imported block can use its neighbours and its own imports.
    """
    for imp in module.imports:
        target = (base / imp.path).resolve()
        if str(target) in seen:
            raise error(imp.span, f"import cycle: {imp.path} imports itself")
        try:
            text = read_source(target)
        except FlashError as exc:
            raise error(imp.span, f"cannot import {imp.path}: {exc.diagnostics[0].message}") from None
        sources[str(target)] = text
        other = parse(text, str(target))
        available: dict[str, Any] = dict(collect_blocks(other, target.parent, sources, (*seen, str(target))))
        for m in other.models:
            available.update({s.name: (s, available) for s in m.body if isinstance(s, ast.BlockDef)})
        if imp.names is None:
            yield from available.items()
            continue
        for name in imp.names:
            if name.id not in available:
                raise error(name.span, f"{imp.path} has no block `{name.id}`", did_you_mean(name.id, available))
            yield name.id, available[name.id]


def build(source: str, file: str = "<input>", overrides: dict[str, Any] | None = None,
          model: str | None = None, base: Path | None = None) -> Graph:
    """Parse, evaluate and check a spec; raise FlashError with every problem found."""
    sources = {file: source}
    try:
        module = parse(source, file)
        if not module.models:
            raise error(Span(file, 1, 1, 1, 1), "no model in this file", "a spec starts with `model Name(...) { ... }`")
        chosen = module.models[0]
        if model is not None:
            names = [m.name for m in module.models]
            if model not in names:
                raise error(Span(file, 1, 1, 1, 1), f"no model named {model}", did_you_mean(model, names))
            chosen = next(m for m in module.models if m.name == model)
        blocks = dict(collect_blocks(module, base or Path(file).parent, sources))
        builder = Builder(file, sources, dict(overrides or {}))
        scope = builder.build_model(chosen, blocks)
        params = {p.name: scope.vars.get(p.name) for p in chosen.params}
        graph = builder.finish(chosen, scope, params, source)
        train = [t for t in module.trains if t.model == chosen.name]
        for t in module.trains:
            if t.model not in [m.name for m in module.models]:
                builder.diagnostics.append(Diagnostic(t.model_span, f"train section names unknown model {t.model}",
                                                      did_you_mean(t.model, [m.name for m in module.models])))
        if train and not builder.diagnostics:
            from flashc.trainspec import build_train

            config, problems = build_train(train[0], graph, scope, builder)
            builder.diagnostics.extend(problems)
            graph = replace(graph, train=config)
        if builder.diagnostics:
            unique = list(dict.fromkeys(builder.diagnostics))  # a block's error is reported once, not per use
            raise FlashError(sorted(unique, key=lambda d: (d.span.file, d.span.line, d.span.col)), sources)
        return graph
    except FlashError as exc:
        if not exc.sources:
            raise FlashError(exc.diagnostics, sources) from None
        raise
