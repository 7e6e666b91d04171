"""flashc: compile declarative .flash model specs to PyTorch and ONNX."""

__version__ = "0.1.0"
