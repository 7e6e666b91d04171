"""A DCGAN on scikit-learn's 8x8 digits, trained from a spec: specs/dcgan_digits.flash holds the
generator and the discriminator in one model, and its train section alternates a discriminator
phase and a generator phase (each its own loss, optimizer and parameters; `noise z` draws the
generator's input at every step).

Scored by a judge that noise would fail: a digits classifier (specs/mlp_digits.flash, trained
here) labels 512 generated images; the mean of its highest class probability must be high and
the images must spread over the classes (mode collapse would put them all in a few). Uniform
noise images and real held-out digits are scored the same way beside them. A PNG grid of 64
samples is written, and onnxruntime's generator must agree with PyTorch's.

    python examples/dcgan_digits.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import SPECS, one_thread, onnx_check, out_dir, show, test_split, timed

import flashc

SAMPLES = 512


def save_grid(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """An 8x8 grid of generated digits, each titled with the judge's label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(8, 8, figsize=(6.4, 7.0), dpi=100)
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(str(label), fontsize=8, pad=2)
        ax.axis("off")
    fig.suptitle("DCGAN samples (title: the classifier's label)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def judge(classifier: torch.nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's highest probability and its label for each 8x8 image."""
    with torch.no_grad():
        probs = torch.softmax(classifier(torch.from_numpy(images.reshape(len(images), 64))), -1)
    top, label = probs.max(-1)
    return top.numpy(), label.numpy()


def main(out: Path, quiet: bool = False, epochs: int | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with one_thread(), timed(results):
        gan = flashc.load(SPECS / "dcgan_digits.flash")
        fit = gan.fit("digits", out / "run", epochs=epochs, quiet=quiet)
        judge_spec = flashc.load(SPECS / "mlp_digits.flash")
        classifier = judge_spec.fit("digits", out / "classifier", quiet=True).model.eval()

        generator = fit.model.eval()
        z = torch.from_numpy(np.random.default_rng(1).standard_normal((SAMPLES, 16)).astype(np.float32))
        real = test_split(judge_spec, "digits").arrays["pixels_in"]
        with torch.no_grad():
            fake = generator(z, torch.zeros(SAMPLES, 1, 8, 8))[0].numpy()
        top, labels = judge(classifier, fake)
        noise_top, _ = judge(classifier, np.random.default_rng(2).random((SAMPLES, 64), dtype=np.float32))
        real_top, _ = judge(classifier, real)
        counts = np.bincount(labels, minlength=10)
        save_grid(out / "samples.png", fake[:64], labels[:64])
        feeds = {"z": z[:8].numpy(), "image": real[:8].reshape(8, 1, 8, 8)}
        diff, _ = onnx_check(gan, out / "run" / "last.safetensors", feeds, out / "dcgan_digits.onnx")
    last = fit.history[-1]
    results.update(
        parameters=gan.parameter_count, epochs=len(fit.history), train_disc_loss=last["train_disc_loss"],
        train_gen_loss=last["train_gen_loss"], classifier_accuracy=classifier_accuracy(classifier, judge_spec),
        samples=SAMPLES, mean_max_probability=float(top.mean()),
        classes_used=int((counts >= SAMPLES * 0.02).sum()), smallest_class_share=float(counts.min() / SAMPLES),
        noise_mean_max_probability=float(noise_top.mean()), real_mean_max_probability=float(real_top.mean()),
        onnx_max_diff=diff, grid=str(out / "samples.png"),
    )
    show("DCGAN on digits", results)
    return results


def classifier_accuracy(classifier: torch.nn.Module, spec: flashc.Spec) -> float:
    test = test_split(spec, "digits").arrays
    with torch.no_grad():
        predicted = classifier(torch.from_numpy(test["pixels_in"])).argmax(-1).numpy()
    return float((predicted == test["label"]).mean())


if __name__ == "__main__":
    main(out_dir(sys.argv, "dcgan_digits"))
