"""A variational autoencoder on scikit-learn's 8x8 digits: train specs/vae_digits.flash
(reconstruction + KL), show that the loss falls, save test reconstructions and samples
from the prior as a PNG grid, and check onnxruntime agrees with PyTorch.

    python examples/vae_digits.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import SPECS, one_thread, onnx_check, out_dir, show, splits, timed

import flashc
from flashc.train.losses import evaluate, kl_div


def negative_elbo(spec: flashc.Spec, model: torch.nn.Module, image: np.ndarray) -> float:
    """The spec's own loss over `image`, model in eval mode (z = mu)."""
    with torch.no_grad():
        x = torch.from_numpy(image)
        outputs = dict(zip([n for n, _ in spec.graph.outputs], model.eval()(x)))
        return float(evaluate(spec.train.loss, {"image": x, **outputs}))


def save_grid(path: Path, rows: list[tuple[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.8, len(rows) * 0.95), dpi=100)
    for r, (title, images) in enumerate(rows):
        for c, img in enumerate(images):
            axes[r, c].imshow(img.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].set_axis_off()
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(out: Path, quiet: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with one_thread(), timed(results):
        spec = flashc.load(SPECS / "vae_digits.flash")
        data = splits(spec, "digits")
        test = data.test.arrays["image"]
        untrained = negative_elbo(spec, spec.to_torch(seed=spec.train.seed), test)
        fit = spec.fit("digits", out / "run", quiet=quiet)
        model = fit.model.eval()
        with torch.no_grad():
            mu, logvar, recon = model(torch.from_numpy(test))
            recon = torch.sigmoid(recon).numpy()
            z = torch.from_numpy(np.random.default_rng(0).standard_normal((10, mu.shape[1])).astype(np.float32))
            samples = torch.sigmoid(model.decode_out(torch.relu(model.decode_hidden(z)))).numpy()
            kl = float(kl_div(mu, logvar))
        mean_image = data.train.arrays["image"].mean(0)
        save_grid(out / "vae_digits.png", [("test images", test[:10]), ("reconstructions", recon[:10]),
                                           ("samples from N(0, I)", samples)])
        diff, _ = onnx_check(spec, out / "run" / "best.safetensors", {"image": test[:8]}, out / "vae_digits.onnx")
    results.update(
        parameters=spec.parameter_count, epochs=len(fit.history), stop_reason=fit.stop_reason,
        untrained_test_loss=untrained, first_val_loss=fit.history[0]["val_loss"],
        best_val_loss=min(h["val_loss"] for h in fit.history), test_loss=fit.test["test_loss"],
        test_kl=kl, reconstruction_mse=float(((recon - test) ** 2).mean()),
        mean_image_mse=float(((mean_image - test) ** 2).mean()), onnx_max_diff=diff,
        grid=str(out / "vae_digits.png"),
    )
    show("VAE on digits (loss: negative ELBO per image, nats)", results)
    return results


if __name__ == "__main__":
    main(out_dir(sys.argv, "vae_digits"))
