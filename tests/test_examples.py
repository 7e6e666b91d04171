"""The training examples under examples/: each trains a spec, checks its result and its
ONNX export; here each runs once (its `main(out_dir)`) and its results are asserted.
Also the parameter counts that the examples' specs state in their header comments."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import flashc

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

SPEC_COUNTS = {
    "lenet_digits": 43_050,
    "vae_digits": 19_792,
    "siamese_digits": 17_616,
    "segment_shapes": 6_481,
    "char_gpt": 136_960,
    "dcgan_digits": 71_618,
    "clip_digits": 9_408,
}


def run(name: str, out: Path) -> dict:
    sys.path.insert(0, str(EXAMPLES))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module.main(out, quiet=True)


def valid_png(path: Path) -> bool:
    import matplotlib.image

    return path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and matplotlib.image.imread(path).ndim == 3


def check_onnx(results: dict, out: Path, name: str) -> None:
    assert results["onnx_max_diff"] <= 1e-4
    assert (out / f"{name}.onnx").is_file()
    assert (out / "run" / "best.safetensors").is_file()


@pytest.mark.parametrize("name, count", SPEC_COUNTS.items())
def test_spec_header_states_the_parameter_count(name, count):
    path = ROOT / "specs" / f"{name}.flash"
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    stated = int(re.findall(r"\d{1,3}(?:,\d{3})+", header)[-1].replace(",", ""))
    assert stated == count == flashc.load(path).parameter_count


@pytest.mark.parametrize("name", SPEC_COUNTS)
def test_spec_onnx_matches_torch_at_two_sizes(name):
    """Seeded weights, eval mode; B (and T) are dynamic in the ONNX graph."""
    spec = flashc.load(ROOT / "specs" / f"{name}.flash")
    model = spec.to_torch(seed=3).eval()
    session = ort.InferenceSession(spec.to_onnx(seed=3).SerializeToString(), providers=["CPUExecutionProvider"])
    g = np.random.default_rng(0)
    for batch, seq in ((2, 5), (3, 11)):
        feeds = {}
        for v in spec.graph.inputs:
            shape = [batch if str(d) == "B" else seq if str(d) == "T" else int(d) for d in v.type.shape]
            feeds[v.name] = g.integers(0, 256, shape) if v.type.dtype == "int64" else g.random(shape, dtype=np.float32)
        got = session.run(None, feeds)
        with torch.no_grad():
            want = model(*(torch.from_numpy(feeds[v.name]) for v in spec.graph.inputs))
        for a, b in zip(got, want if isinstance(want, tuple) else (want,)):
            assert a.shape == tuple(b.shape) and a.shape[0] == batch
            np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=0)


def test_mlp_digits(tmp_path):
    r = run("mlp_digits", tmp_path)
    assert r["test_accuracy"] >= 0.96
    assert r["onnx_argmax_equal"] and r["onnx_accuracy"] == pytest.approx(r["test_accuracy"])
    check_onnx(r, tmp_path, "mlp_digits")
    assert r["parameters"] == 17_226
    assert r["seconds"] < 60


def test_lenet_digits(tmp_path):
    r = run("lenet_digits", tmp_path)
    assert r["test_accuracy"] >= 0.97
    assert r["onnx_argmax_equal"] and r["onnx_accuracy"] == pytest.approx(r["test_accuracy"])
    check_onnx(r, tmp_path, "lenet_digits")
    assert r["seconds"] < 60


def test_vae_digits(tmp_path):
    r = run("vae_digits", tmp_path)
    assert r["best_val_loss"] < r["first_val_loss"] < r["untrained_test_loss"]  # the loss falls
    assert r["test_loss"] < 0.6 * r["untrained_test_loss"]
    assert r["reconstruction_mse"] < 0.5 * r["mean_image_mse"]
    assert r["test_kl"] > 0.5  # the latent code is used, not collapsed to the prior
    assert valid_png(Path(r["grid"]))
    check_onnx(r, tmp_path, "vae_digits")
    assert r["seconds"] < 60


def test_siamese_digits(tmp_path):
    r = run("siamese_digits", tmp_path)
    assert r["roc_auc"] >= 0.9
    assert r["mean_distance_same"] < r["mean_distance_different"]
    assert r["roc_auc"] > r["pixel_distance_roc_auc"]
    check_onnx(r, tmp_path, "siamese_digits")
    assert r["seconds"] < 60


def test_segment_shapes(tmp_path):
    r = run("segment_shapes", tmp_path)
    assert r["val_dice"] >= 0.9 and r["val_soft_dice"] >= 0.9
    assert r["test_dice"] >= 0.9
    assert valid_png(Path(r["figure"]))
    check_onnx(r, tmp_path, "segment_shapes")
    assert r["seconds"] < 60


def test_char_gpt(tmp_path):
    r = run("char_gpt", tmp_path)
    # Validation text is held out in contiguous stretches (no overlap with training windows):
    # measured 2.36 nats per byte at the best epoch; the text's unigram entropy is 3.56.
    assert r["val_loss"] < 2.5
    assert r["val_loss"] < r["unigram_entropy"] - 1.0
    assert r["onnx_argmax_equal"]
    for text in (r["greedy"], r["sampled"]):
        assert text.startswith("Python is ") and len(text) == len("Python is ") + 120
    assert (tmp_path / "samples.txt").read_text().count("Python is ") == 2
    check_onnx(r, tmp_path, "char_gpt")
    assert r["seconds"] < 60


def test_dcgan_digits(tmp_path):
    """Two phases (discriminator, generator) from one train section; a classifier judges the samples."""
    r = run("dcgan_digits", tmp_path)
    # Measured 0.88 over 10 classes (512 samples); uniform noise scores 0.69, real digits 0.98.
    assert r["mean_max_probability"] >= 0.8 > r["noise_mean_max_probability"]
    assert r["classes_used"] == 10 and r["smallest_class_share"] >= 0.02
    assert r["classifier_accuracy"] >= 0.95
    assert valid_png(Path(r["grid"]))
    assert r["onnx_max_diff"] <= 1e-4
    assert r["seconds"] < 120


def test_clip_digits(tmp_path):
    """Contrastive labels are `arange(B)` in the loss; retrieval is by digit (captions are unique)."""
    r = run("clip_digits", tmp_path)
    # Measured: image -> caption 0.97, caption -> image 0.96, zero-shot 0.98; chance 0.12.
    assert r["image_to_text_accuracy"] >= 0.9 and r["text_to_image_accuracy"] >= 0.9
    assert r["zero_shot_accuracy"] >= 0.9 > 3 * r["chance"]
    assert r["onnx_max_diff"] <= 1e-4
    assert r["seconds"] < 120


def test_an_example_runs_as_a_script(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "siamese_digits.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "roc_auc:" in done.stdout
    assert (tmp_path / "run" / "metrics.jsonl").is_file() and (tmp_path / "siamese_digits.onnx").is_file()


def test_quickstart_trains_compiles_and_agrees(capsys):
    """The README's main job: check, train, compile to ONNX and PyTorch, run both on held-out digits."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        quickstart = importlib.import_module("quickstart")
    finally:
        sys.path.remove(str(EXAMPLES))
    assert quickstart.main() == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("onnxruntime accuracy on 180 held-out digits: ")[1].split()[0])
    assert accuracy >= 0.9
    assert "total parameters: 17,226" in out
