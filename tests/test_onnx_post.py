"""float16 export and int8 quantization keep a trained digits model's accuracy."""

import onnxruntime as ort
import pytest

import flashc
from flashc.cli import main
from flashc.train.builtin import digits
from flashc.train.dataset import split


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    spec = flashc.load("specs/mlp_digits.flash")
    spec.fit("digits", run, epochs=3, quiet=True)
    data = split(digits(spec.graph, None), 0.1, 0.1, spec.train.seed).test
    return run, data


def accuracy(path, data):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"pixels_in": data.arrays["pixels_in"]})[0]
    return float((logits.argmax(-1) == data.arrays["label"]).mean())


@pytest.mark.parametrize("flags", [["--dtype", "float16"], ["--quantize", "int8"]])
def test_reduced_precision_keeps_accuracy(trained, tmp_path, flags, capsys):
    run, data = trained
    base, reduced = tmp_path / "base.onnx", tmp_path / "reduced.onnx"
    common = ["compile", "specs/mlp_digits.flash", "--target", "onnx", "--weights", str(run / "best.safetensors")]
    assert main([*common, "-o", str(base)]) == 0
    assert main([*common, "-o", str(reduced), *flags]) == 0
    full, low = accuracy(base, data), accuracy(reduced, data)
    print(f"{flags}: accuracy {full:.4f} -> {low:.4f}")
    assert full >= 0.9
    assert low >= full - 0.01
    assert reduced.stat().st_size < base.stat().st_size
