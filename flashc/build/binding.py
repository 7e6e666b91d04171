"""Arguments: bind positional and keyword arguments to an op's inputs, settings and ties; check them."""

from __future__ import annotations

from typing import Any

from flashc.build.state import BuilderState
from flashc.build.values import DType, Tensor, WeightRef, describe
from flashc.diagnostics import Span, did_you_mean
from flashc.ir.dims import Sym
from flashc.ops.base import Op, Param
from flashc.ops.sizes import names_in

# Settings the builder fills in itself (where a run-time size is read); a spec cannot set them.
SET_BY_COMPILER = frozenset({"source_axes"})


class Binding(BuilderState):
    def bind_args(self, cls: type[Op], args: list, kwargs: dict, span: Span, tensors_only: bool = False) -> tuple:
        tensors: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        ties: dict[str, WeightRef] = {}
        slots = [i for i in cls.inputs]
        params = [k for k in cls.params if k not in SET_BY_COMPILER]
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
            if slots and slots[0].name in cls.scalar_inputs and isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[cls.scalar_inputs[slots.pop(0).name]] = (value, aspan)  # a number in a tensor's place
                continue
            if isinstance(value, Tensor):
                raise self.fail(aspan, f"`{cls.name}` takes {len(cls.inputs)} tensor input(s), got one more")
            if tensors_only:
                raise self.fail(aspan, f"layer `{cls.name}` already has its settings; pass only tensors here")
            slots = [s for s in slots if s.variadic]  # a setting ends the tensor arguments
            while param_i < len(params) and params[param_i] in attrs and cls.params[params[param_i]].kind != "shape":
                param_i += 1
            if param_i >= len(params):
                raise self.fail(aspan, f"`{cls.name}` takes at most {len(params)} setting(s), got {describe(value)} as one more")
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
            elif key in cls.params and key not in SET_BY_COMPILER and not tensors_only:
                attrs[key] = (value, aspan)
            else:
                known = [k for k in cls.params if k not in SET_BY_COMPILER] + [i.name for i in cls.inputs] + list(cls.tieable)
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
            "dtype": isinstance(value, DType),
        }[param.kind]
        if value is None and param.default is None:
            ok = True
        if not ok:
            kind = param.kind if isinstance(param.kind, str) else param.kind.__name__
            words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
                     "ints": "a whole number or a tuple of them", "dim": "a whole number or a dimension",
                     "floats": "a tuple of numbers", "name": "a name",
                     "dtype": "a dtype written bare, such as float32"}
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
        if param.maximum is not None and isinstance(value, (int, float)) and value > param.maximum:
            raise self.fail(aspan, f"`{cls.name}` {name} must be at most {param.maximum:,}, got {value:,}")
        if param.kind == "dtype":
            value = value.name
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
        """Symbolic sizes are read at run time from the inputs that declared their names.

        An op that takes sizes (zeros, arange, positions, slice, ...) has the `sources` input
        and the `source_axes` setting: each name its `dim` and `shape` settings use brings the
        input that declared it in as a source, so any dimension expression works.
        """
        if "source_axes" not in cls.params:
            return attrs, tensors
        if tensors.get("sources"):
            raise self.fail(span, f"`{cls.name}` takes no tensor: its sizes are numbers or dimensions of the inputs")
        names: list[str] = []
        for name, param in cls.params.items():
            value = attrs.get(name)
            if param.kind in ("dim", "shape"):
                for d in value if isinstance(value, tuple) else (value,):
                    if isinstance(d, Sym):
                        names += [n for n in names_in(d) if n not in names]
        unknown = [n for n in names if n not in self.dim_sources]
        if unknown:
            raise self.fail(span, f"`{cls.name}` sizes must be numbers or dimensions of the model's inputs; "
                                  f"`{unknown[0]}` is neither", "declare it in an input's shape, e.g. `input x: float32[B, T]`")
        sources = [self.dim_sources[n] for n in names]
        if not sources and not tensors and self.inputs:  # fixed sizes: the first input still tells PyTorch the device
            sources = [(self.inputs[0], -1)]
            names = [""]
        attrs = {**attrs, "source_axes": tuple((n, axis) for n, (_, axis) in zip(names, sources))}
        return attrs, {**tensors, "sources": [Tensor(v) for v, _ in sources]}
