"""The op registry. Importing this package registers every op family.

Every module in this folder is imported, so a new family is one new file.
"""

import importlib
import pkgutil

from flashc.ops.base import REGISTRY, Input, Lowering, Op, Param

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REGISTRY", "Input", "Lowering", "Op", "Param"]
