"""Statements: the model header, inputs, assignments, outputs; binding names to values."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flashc.build import limits
from flashc.build.identifiers import layer_name_problem, number_problem
from flashc.build.scope import CONSTANTS, MODULE_ATTRS, Scope, class_names_taken
from flashc.build.state import BuilderState
from flashc.build.values import (
    POISON,
    Block,
    Layer,
    Moe,
    Poison,
    Repeat,
    Sequential,
    Tensor,
    WeightRef,
    _Abort,
    describe,
)
from flashc.diagnostics import Diagnostic, FlashError, Span, did_you_mean
from flashc.ir.dims import Dim, Sym
from flashc.ir.types import DTYPES, INPUT_DTYPES, TensorType
from flashc.ops.base import REGISTRY
from flashc.syntax import ast


class Statements(BuilderState):
    def build_model(self, model: ast.Model, blocks: dict[str, tuple[ast.BlockDef, dict]]) -> Scope:
        scope = Scope({}, None, "", owner=object())
        if model.name in class_names_taken():
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
        problem = number_problem(value)
        if ok and problem:
            raise self.fail(p.span, f"cannot set `{p.name}`: {problem}")
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
        if len(t.dims) > limits.MAX_RANK:
            raise self.fail(t.span, f"a tensor of rank {len(t.dims):,} is above the limit of {limits.MAX_RANK} axes")
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
        if hasattr(value, "path") and not isinstance(value, WeightRef):  # it becomes a module attribute
            problem = layer_name_problem(name)
            if problem:
                raise self.fail(span or Span.unknown(self.file), problem, f"try `{name.strip('_')}_layer`")
        if isinstance(value, (Layer, Block, Repeat, Sequential, Moe)) and name in MODULE_ATTRS:
            raise self.fail(span or Span.unknown(self.file), f"`{name}` cannot name a layer: torch modules already use it",
                            f"try `{name}_layer`")
        if isinstance(value, Layer) and value.path is None:
            value.path = self.claim_path(self.binding_path(name, scope), scope.owner)
        elif isinstance(value, Block) and value.path is None and value.node.name != name:
            path = self.claim_path(self.binding_path(name, scope), scope.owner)
            value = replace(value, path=path, owner=(scope.owner, path))
        elif isinstance(value, (Repeat, Sequential, Moe)) and value.path is None:
            value = replace(value, path=self.claim_path(self.binding_path(name, scope), scope.owner))
        elif isinstance(value, Tensor):
            self.renames.setdefault(value.value.name, scope.path(name))  # `blocks.0.x`
        scope.vars[name] = value

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
        if len(self.output_names) != len(self.outputs) or len(self.input_names) != len(self.inputs):
            self.output_names = {n for n, _ in self.outputs}  # sets, so many outputs cost linear time
            self.input_names = {v.name for v in self.inputs}
        if stmt.name in self.output_names:
            raise self.fail(stmt.span, f"output `{stmt.name}` is declared twice")
        if stmt.name in self.input_names:
            raise self.fail(stmt.span, f"output `{stmt.name}` has the name of an input", "give the output its own name")
        scope.vars[stmt.name] = value
        self.renames[value.value.name] = stmt.name
        self.outputs.append((stmt.name, value.value))
        self.output_names.add(stmt.name)

    def constant(self, value: Any, span: Span, what: str) -> Any:
        if isinstance(value, (bool, int, float, str)) or (isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value)):
            return value
        raise self.fail(span, f"{what} must be a number, string or tuple, got {describe(value)}")
