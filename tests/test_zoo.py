"""The model zoo's published parameter counts, as `flashc check` prints them.

Every spec below states its count in its header comment; `flashc check` at the spec's own sizes
must print exactly that figure. The two largest (Mistral 7B, Mixtral 8x7B) are counted from
shapes alone: a subprocess checks them and its peak memory stays under 200 MB.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from spec_headers import header_comment, header_count

from flashc.cli import main

SPECS = Path(__file__).resolve().parent.parent / "specs"

# spec -> (model, published count, its source)
ZOO = {
    "tinyllama": (None, 1_100_048_384, "HF LlamaForCausalLM"),
    "mistral": (None, 7_241_732_096, "HF MistralForCausalLM"),
    "mixtral": (None, 46_702_792_704, "HF MixtralForCausalLM"),
    "mobilenet_v2": (None, 3_504_872, "torchvision"),
    "efficientnet_b0": (None, 5_288_548, "torchvision"),
    "convnext_tiny": (None, 28_589_128, "torchvision"),
    "dcgan": (None, 3_576_704, "PyTorch DCGAN tutorial"),
    "se_resnet50": (None, 28_088_024, "timm seresnet50"),
    "clip_vit_b32": (None, 151_277_313, "HF CLIPModel"),
    "t5_small": (None, 60_506_624, "HF T5ForConditionalGeneration"),
    "whisper_tiny": (None, 37_760_640, "HF WhisperForConditionalGeneration"),
}
EXTRA_MODELS = {("dcgan", "Discriminator"): 2_765_568}
LARGE = ["mistral", "mixtral"]
PEAK_RSS = 200 * 2**20


def printed_total(text: str) -> int:
    (total,) = re.findall(r"^total parameters: ([\d,]+)$", text, re.MULTILINE)
    return int(total.replace(",", ""))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_header_states_the_published_count(name):
    path = SPECS / f"{name}.flash"
    assert header_count(path) == ZOO[name][1]
    assert "Published parameter count" in header_comment(path)


@pytest.mark.parametrize("name", sorted(set(ZOO) - set(LARGE)))
def test_check_prints_the_published_count(name, capsys):
    assert main(["check", str(SPECS / f"{name}.flash")]) == 0
    assert printed_total(capsys.readouterr().out) == ZOO[name][1]


@pytest.mark.parametrize(("name", "model"), sorted(EXTRA_MODELS))
def test_check_prints_the_count_of_a_second_model(name, model, capsys):
    assert main(["check", str(SPECS / f"{name}.flash"), "--model", model]) == 0
    assert printed_total(capsys.readouterr().out) == EXTRA_MODELS[name, model]


# A fresh parent runs `flashc check` as its only child, so RUSAGE_CHILDREN's ru_maxrss (KiB on Linux)
# is that check's peak alone, whatever else this test process has run.
MEASURE = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "flashc.cli", "check", sys.argv[1]], capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
print(done.stdout)
sys.exit(done.returncode)
"""


@pytest.mark.parametrize("name", LARGE)
def test_large_models_are_counted_without_allocating_their_weights(name):
    """27 GiB (Mistral) and 175 GiB (Mixtral) of float32 weights: check reads shapes only."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(SPECS / f"{name}.flash")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    peak, report = done.stdout.split("\n", 1)
    assert printed_total(report) == ZOO[name][1]
    assert int(peak) < PEAK_RSS, f"peak RSS {int(peak) / 2**20:.0f} MiB"
