"""Segmentation of noisy synthetic shapes: train specs/segment_shapes.flash with the Dice
loss on the built-in `shapes` data, report the validation Dice score (soft, as the loss
computes it, and of the thresholded masks), save images / true / predicted masks as a PNG,
and check that onnxruntime agrees with PyTorch.

    python examples/segment_shapes.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import SPECS, one_thread, onnx_check, out_dir, show, splits, timed

import flashc


def dice_scores(predicted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-image Dice overlap 2|P & M| / (|P| + |M|) of 0/1 masks."""
    p, m = predicted.reshape(len(mask), -1), mask.reshape(len(mask), -1)
    return 2 * (p * m).sum(1) / np.maximum(p.sum(1) + m.sum(1), 1)


def save_examples(path: Path, image: np.ndarray, mask: np.ndarray, predicted: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(image)
    fig, axes = plt.subplots(3, n, figsize=(n * 1.1, 3.5), dpi=100)
    for row, (title, arrays) in enumerate([("image", image), ("true mask", mask), ("predicted", predicted)]):
        for c in range(n):
            axes[row, c].imshow(arrays[c, 0], cmap="gray")
            axes[row, c].set_axis_off()
        axes[row, 0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(out: Path, quiet: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with one_thread(), timed(results):
        spec = flashc.load(SPECS / "segment_shapes.flash")
        fit = spec.fit("shapes", out / "run", quiet=quiet)
        data = splits(spec, "shapes")
        model = fit.model.eval()
        scores = {}
        for name, part in (("val", data.val.arrays), ("test", data.test.arrays)):
            with torch.no_grad():
                logits = model(torch.from_numpy(part["image"])).numpy()
            predicted = (logits > 0).astype(np.float32)
            scores[name] = dice_scores(predicted, part["mask"])
            if name == "test":
                save_examples(out / "segment_shapes.png", part["image"][:8], part["mask"][:8], predicted[:8])
        diff, _ = onnx_check(spec, out / "run" / "best.safetensors", {"image": data.test.arrays["image"][:4]},
                             out / "segment_shapes.onnx")
    best = min(h["val_loss"] for h in fit.history)
    results.update(
        parameters=spec.parameter_count, epochs=len(fit.history), stop_reason=fit.stop_reason,
        val_soft_dice=1 - best, val_dice=float(scores["val"].mean()), test_dice=float(scores["test"].mean()),
        worst_val_dice=float(scores["val"].min()), onnx_max_diff=diff, figure=str(out / "segment_shapes.png"),
    )
    show("Segmentation of synthetic shapes (Dice)", results)
    return results


if __name__ == "__main__":
    main(out_dir(sys.argv, "segment_shapes"))
