"""flashc: compile declarative .flash model specs to PyTorch and ONNX."""

__version__ = "0.1.0"

from flashc.api import Spec, load, load_model, loads  # noqa: E402
from flashc.diagnostics import FlashError  # noqa: E402

__all__ = ["FlashError", "Spec", "__version__", "load", "load_model", "loads"]
