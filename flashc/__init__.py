"""flashc: compile declarative .flash model specs to PyTorch and ONNX."""

from flashc.api import Spec, load, load_model, loads
from flashc.diagnostics import FlashError
from flashc.version import __version__

__all__ = ["FlashError", "Spec", "__version__", "load", "load_model", "loads"]
