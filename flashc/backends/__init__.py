"""Lowerings of the checked IR: PyTorch modules and ONNX graphs."""
