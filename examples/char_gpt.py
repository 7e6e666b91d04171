"""A tiny character-level GPT: train specs/char_gpt.flash on the built-in `chars` data
(windows of the license text that ships with Python, byte ids 0-255), report the
validation loss in nats beside the text's unigram entropy, generate a greedy and a
sampled continuation with the trained PyTorch model, and check onnxruntime agrees.

    python examples/char_gpt.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import SPECS, one_thread, onnx_check, out_dir, show, splits, timed

import flashc

DATA = "chars:64"  # windows of 64 bytes; the spec's T is symbolic
PROMPT = "Python is "


@torch.no_grad()
def generate(model: torch.nn.Module, prompt: str, length: int, ctx: int, temperature: float = 0.0,
             seed: int = 0) -> str:
    """Continue `prompt` byte by byte: argmax when temperature is 0, else sample."""
    g = torch.Generator().manual_seed(seed)
    ids = list(prompt.encode("ascii"))
    for _ in range(length):
        logits = model(torch.tensor([ids[-ctx:]]))[0, -1]
        if temperature == 0:
            ids.append(int(logits.argmax()))
        else:
            ids.append(int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g)))
    return bytes(ids).decode("ascii", errors="replace")


def unigram_entropy(tokens: np.ndarray) -> float:
    counts = np.bincount(tokens.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def main(out: Path, quiet: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with one_thread(), timed(results):
        spec = flashc.load(SPECS / "char_gpt.flash")
        fit = spec.fit(DATA, out / "run", quiet=quiet)
        data = splits(spec, DATA)
        model = fit.model.eval()
        ctx = spec.graph.params["ctx"]
        greedy = generate(model, PROMPT, 120, ctx)
        sampled = generate(model, PROMPT, 120, ctx, temperature=0.8)
        test = data.test.arrays["tokens"][:4]
        diff, (logits,) = onnx_check(spec, out / "run" / "best.safetensors", {"tokens": test}, out / "char_gpt.onnx")
        with torch.no_grad():
            argmax_equal = bool((model(torch.from_numpy(test)).argmax(-1).numpy() == logits.argmax(-1)).all())
    (out / "samples.txt").write_text(f"greedy:\n{greedy}\n\nsampled (temperature 0.8):\n{sampled}\n")
    results.update(
        parameters=spec.parameter_count, epochs=len(fit.history), windows=len(data.train) + len(data.val) + len(data.test),
        unigram_entropy=unigram_entropy(data.train.arrays["targets"]), first_val_loss=fit.history[0]["val_loss"],
        best_epoch=fit.best_epoch, val_loss=fit.history[fit.best_epoch - 1]["val_loss"],
        val_accuracy=fit.history[fit.best_epoch - 1]["val_accuracy"],
        test_loss=fit.test["test_loss"], onnx_max_diff=diff, onnx_argmax_equal=argmax_equal,
        greedy=greedy, sampled=sampled,
    )
    show("Character-level GPT (losses in nats per byte)", results)
    return results


if __name__ == "__main__":
    main(out_dir(sys.argv, "char_gpt"))
