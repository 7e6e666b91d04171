"""A LeNet-style CNN on scikit-learn's 8x8 digits (images [B, 1, 8, 8]): train
specs/lenet_digits.flash, report test accuracy, compile the best weights to ONNX and
check onnxruntime agrees with PyTorch.

    python examples/lenet_digits.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from _common import SPECS, one_thread, onnx_check, out_dir, show, test_split, timed

import flashc


def main(out: Path, quiet: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with one_thread(), timed(results):
        spec = flashc.load(SPECS / "lenet_digits.flash")
        fit = spec.fit("digits", out / "run", quiet=quiet)
        test = test_split(spec, "digits").arrays
        diff, (logits,) = onnx_check(spec, out / "run" / "best.safetensors", {"image": test["image"]},
                                     out / "lenet_digits.onnx")
        with torch.no_grad():
            torch_pred = fit.model.eval()(torch.from_numpy(test["image"])).argmax(-1).numpy()
    results.update(
        parameters=spec.parameter_count, epochs=len(fit.history), best_epoch=fit.best_epoch,
        stop_reason=fit.stop_reason, test_accuracy=fit.test["test_accuracy"],
        onnx_accuracy=float((logits.argmax(-1) == test["label"]).mean()),
        onnx_argmax_equal=bool((logits.argmax(-1) == torch_pred).all()), onnx_max_diff=diff, run=str(out / "run"),
    )
    show("LeNet-style CNN on digits", results)
    return results


if __name__ == "__main__":
    main(out_dir(sys.argv, "lenet_digits"))
