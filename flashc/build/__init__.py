"""AST -> checked IR: evaluate the spec, asking the op registry at every call.

Evaluation is symbolic: tensors are IR values, layers and blocks are callables,
numbers are numbers. Each op application infers its output type on the spot,
so the graph that comes out is fully checked. Errors in independent statements
are collected and reported together; a failed statement binds its target to
:data:`POISON` so it does not cause a cascade of follow-on errors.

One module per concern, composed as mixins into :class:`Builder`:

  values       what evaluation gives (Tensor, Layer, Block, Repeat, Sequential, ...)
  scope        Scope and reserved names;  names   value names, layer paths, final names
  state        the fields every mixin shares, and error reporting
  statements   model header, inputs, assignments, outputs
  expressions  names, attributes, arithmetic, calls, pipes
  binding      arguments bound to an op's inputs and settings, and checked
  apply        layers and blocks applied;  repeat, sequential   the containers
  nodes        one op application -> one IR node with its weights
  source       reading files and `import`;  train   the train section
  entry        build(): the whole pipeline for one spec
"""

from flashc import ops as _ops  # noqa: F401  (registers every op)
from flashc.build.builder import Builder
from flashc.build.entry import build
from flashc.build.scope import Scope
from flashc.build.source import collect_blocks, read_source
from flashc.build.values import POISON, _Abort, describe

__all__ = ["POISON", "Builder", "Scope", "_Abort", "build", "collect_blocks", "describe", "read_source"]
