"""A Siamese network on pairs of 8x8 digits: train specs/siamese_digits.flash with the
contrastive loss, then check that same-digit pairs lie closer than different-digit pairs
(ROC AUC of -distance on the test pairs, beside raw pixel distance as a baseline), and
that onnxruntime agrees with PyTorch.

    python examples/siamese_digits.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import SPECS, one_thread, onnx_check, out_dir, show, test_split, timed
from sklearn.metrics import roc_auc_score

import flashc


def main(out: Path, quiet: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with one_thread(), timed(results):
        spec = flashc.load(SPECS / "siamese_digits.flash")
        fit = spec.fit("digit_pairs", out / "run", quiet=quiet)
        test = test_split(spec, "digit_pairs").arrays
        model = fit.model.eval()
        with torch.no_grad():
            ea, eb = model(torch.from_numpy(test["a"]), torch.from_numpy(test["b"]))
        distance = (ea - eb).norm(dim=1).numpy()
        same = test["same"] == 1
        pixels = np.linalg.norm(test["a"] - test["b"], axis=1)
        diff, _ = onnx_check(spec, out / "run" / "best.safetensors", {"a": test["a"][:8], "b": test["b"][:8]},
                             out / "siamese_digits.onnx")
    results.update(
        parameters=spec.parameter_count, epochs=len(fit.history), stop_reason=fit.stop_reason,
        test_loss=fit.test["test_loss"], test_pairs=len(same), same_share=float(same.mean()),
        mean_distance_same=float(distance[same].mean()), mean_distance_different=float(distance[~same].mean()),
        roc_auc=float(roc_auc_score(same, -distance)), pixel_distance_roc_auc=float(roc_auc_score(same, -pixels)),
        onnx_max_diff=diff,
    )
    show("Siamese network on digit pairs", results)
    return results


if __name__ == "__main__":
    main(out_dir(sys.argv, "siamese_digits"))
