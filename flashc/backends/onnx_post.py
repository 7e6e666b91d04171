"""Post-passes on a written ONNX file, done by onnxruntime's own tools.

float16 export uses onnxruntime's float16 converter (inputs and outputs stay
float32, so callers feed the same arrays); int8 uses onnxruntime's dynamic
quantization of MatMul/Gemm weights, after its pre-processing pass folds the
weight transposes so the quantizer sees the weights.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from flashc.weights import atomic_files


def to_float16(path: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    with atomic_files(path) as (fh, _):
        fh.write(model.SerializeToString())


def quantize_int8(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice through the root logger
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
        # Only MatMul/Gemm: the quantizer would mistake the standard `Attention` op for its contrib namesake.
        quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])
        with atomic_files(path) as (fh, _):
            fh.write(quantized.read_bytes())


def post_process(path: Path, graph: object, dtype: str = "float32", quantize: str | None = None) -> None:
    """Apply `--dtype float16` and/or `--quantize int8` to the file just written for ``graph``."""
    if dtype == "float16":
        to_float16(path)
    if quantize == "int8":
        quantize_int8(path)
