"""CLIP-style contrastive training on pairs this example makes: each 8x8 digit is paired with a
"caption", a 16-number code word of its digit plus Gaussian noise (so no two captions are the
same). specs/clip_digits.flash embeds both and scores every image against every caption of a
batch; its loss is the symmetric cross-entropy with `arange(B)` as the labels.

Measured on the held-out pairs: retrieval (for each image, is the best-scoring caption one of the
same digit, and the other way round; chance is about 0.1) and zero-shot classification (each
image against the ten clean code words, as CLIP reads class prompts). onnxruntime must agree
with PyTorch.

    python examples/clip_digits.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import SPECS, one_thread, onnx_check, out_dir, show, timed
from sklearn.datasets import load_digits

import flashc
from flashc.train.dataset import Dataset, split

WORDS, NOISE = 16, 0.7


def pairs() -> tuple[Dataset, np.ndarray, np.ndarray]:
    """(image, caption) pairs, every digit's label, and the ten clean code words."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((10, WORDS)).astype(np.float32)
    captions = codes[digits.target] + NOISE * rng.standard_normal((len(digits.target), WORDS)).astype(np.float32)
    images = (digits.images.reshape(-1, 64) / 16.0).astype(np.float32)
    return Dataset({"image": images, "caption": captions.astype(np.float32)}), digits.target, codes


def main(out: Path, quiet: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with one_thread(), timed(results):
        spec = flashc.load(SPECS / "clip_digits.flash")
        data, labels, codes = pairs()
        fit = spec.fit(data, out / "run", quiet=quiet)
        # the held-out pairs, as `fit` split them (labels ride along as an extra array)
        with_labels = Dataset({**data.arrays, "label": labels})
        test = split(with_labels, spec.train.settings["validation"], 0.1, spec.train.seed).test.arrays
        model = fit.model.eval()
        with torch.no_grad():
            scores = model(torch.from_numpy(test["image"]), torch.from_numpy(test["caption"])).numpy()
            zero_shot = model(torch.from_numpy(test["image"]), torch.from_numpy(codes)).numpy()
        same = test["label"]
        feeds = {"image": test["image"][:8], "caption": test["caption"][:8]}
        diff, _ = onnx_check(spec, out / "run" / "last.safetensors", feeds, out / "clip_digits.onnx")
    results.update(
        parameters=spec.parameter_count, epochs=len(fit.history), test_loss=fit.test["test_loss"],
        test_pairs=len(same),
        image_to_text_accuracy=float((same[scores.argmax(1)] == same).mean()),
        text_to_image_accuracy=float((same[scores.argmax(0)] == same).mean()),
        exact_pair_accuracy=float((scores.argmax(1) == np.arange(len(same))).mean()),
        zero_shot_accuracy=float((zero_shot.argmax(1) == same).mean()),
        chance=float(np.max(np.bincount(same)) / len(same)), onnx_max_diff=diff,
    )
    show("CLIP-style contrastive training on digit / caption pairs", results)
    return results


if __name__ == "__main__":
    main(out_dir(sys.argv, "clip_digits"))
