"""Scopes: the names visible in a model or block body and the layer-path prefix there."""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from flashc.ops.base import REGISTRY

# Names a generated value may not take (it is renamed `x_1`): they would shadow what the code uses.
RESERVED = {"self", "torch", "nn", "F", "math"} | set(keyword.kwlist) | {n for n in dir(builtins) if not n.startswith("_")}
CONSTANTS = {"true": True, "false": False}
BUILTINS = ("repeat", "sequential", "moe", "moe_aux", "scan")
# Attributes every torch.nn.Module already has: a layer may not be named like them.
MODULE_ATTRS = frozenset({
    "training", "forward", "state_dict", "load_state_dict", "parameters", "named_parameters", "buffers",
    "named_buffers", "children", "named_children", "modules", "named_modules", "train", "eval", "to", "cuda",
    "cpu", "apply", "type", "float", "double", "half", "bfloat16", "zero_grad", "register_buffer",
    "register_parameter", "register_module", "add_module", "requires_grad_", "extra_repr", "get_submodule",
    "get_parameter", "get_buffer", "share_memory", "dump_patches", "call_super_init", "input_names",
    "output_names", "flashc_source", "compile", "get_extra_state", "set_extra_state", "set_submodule", "to_empty",
    "ipu", "mtia", "xpu", "T_destination", "register_backward_hook", "register_forward_hook",
    "register_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook", "register_state_dict_post_hook",
    "register_state_dict_pre_hook",
})
def class_names_taken() -> frozenset[str]:
    """Names the generated torch file defines or imports: a model may not take them."""
    preludes = "\n".join(p for cls in REGISTRY.values() for p in cls.torch_prelude)
    return frozenset({"torch", "nn", "F", "math", *re.findall(r"^class (\w+)", preludes, re.M)})


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
