"""`flashc generate` and `Spec.generate`: Hugging Face's greedy tokens, token for token; streaming,
stop ids, sampling, batches, a tokenizer.json; clean errors.

The reference is a small GPT2LMHeadModel built from a seeded random config (nothing downloaded),
saved with save_pretrained and read by `--weights` through specs/gpt2.hf.map. The tokenizer is a
word-level tokenizer.json built with the `tokenizers` library itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flashc

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SIZES = {"depth": 2, "d": 32, "heads": 4, "vocab": 64, "ctx": 64}
SETS = [item for k, v in SIZES.items() for item in ("--set", f"{k}={v}")]
PROMPT = [5, 17, 3, 42, 8, 8, 31]


def flashc_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flashc.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory) -> tuple[Path, object]:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger weights than the init, so the greedy path is not one repeated token
        for p in model.parameters():
            p.mul_(8.0 if p.dim() == 2 else 1.0)
    folder = tmp_path_factory.mktemp("hf_gpt2")
    model.save_pretrained(folder)
    return folder, model


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, min_new_tokens=n,
                             pad_token_id=0, eos_token_id=None)
    return out[0, len(prompt):].tolist()


def test_greedy_tokens_equal_hugging_face_generate(hf_gpt2, tmp_path) -> None:
    folder, model = hf_gpt2
    want = hf_greedy(model, PROMPT, 40)
    assert len(set(want)) > 3  # a path worth comparing
    run = flashc_cli("generate", "specs/gpt2.flash", *SETS, "--weights", str(folder), "--prompt-ids",
                     ",".join(map(str, PROMPT)), "--max-new-tokens", "40", "--greedy")
    assert run.returncode == 0, run.stderr
    assert [int(t) for t in run.stdout.split()] == want
    assert "tokens/s" in run.stderr and "KV cache" in run.stderr
    # the same through an .onnx compiled at opset 17 (the decomposition), and through the Python API
    onnx_file = tmp_path / "g.onnx"
    assert flashc_cli("compile", "specs/gpt2.flash", *SETS, "--weights", str(folder), "--target", "onnx",
                      "--kv-cache", "--opset", "17", "-o", str(onnx_file)).returncode == 0
    run = flashc_cli("generate", str(onnx_file), "--prompt-ids", ",".join(map(str, PROMPT)), "--max-new-tokens", "40")
    assert [int(t) for t in run.stdout.split()] == want
    spec = flashc.load("specs/gpt2.flash", **SIZES)
    assert spec.generate(PROMPT, 40, weights=folder).tokens == [want]


def test_a_model_without_cache_gives_the_same_tokens(hf_gpt2, tmp_path) -> None:
    folder, model = hf_gpt2
    plain = tmp_path / "plain.onnx"
    assert flashc_cli("compile", "specs/gpt2.flash", *SETS, "--weights", str(folder), "--target", "onnx",
                      "-o", str(plain)).returncode == 0
    run = flashc_cli("generate", str(plain), "--prompt-ids", ",".join(map(str, PROMPT)), "--max-new-tokens", "12")
    assert [int(t) for t in run.stdout.split()] == hf_greedy(model, PROMPT, 12)
    assert "no cache" in run.stderr


def test_stop_ids_batches_and_sampling() -> None:
    spec = flashc.load("specs/gpt2.flash", **SIZES)
    free = spec.generate(PROMPT, 10).tokens[0]
    stopped = spec.generate(PROMPT, 10, stop_ids=[free[3]]).tokens[0]
    assert stopped == free[: free.index(free[3]) + 1]
    batch = spec.generate([PROMPT, PROMPT[::-1]], 6).tokens
    assert batch[0] == free[:6] and batch[1] == spec.generate(PROMPT[::-1], 6).tokens[0]
    draws = [spec.generate(PROMPT, 8, greedy=False, top_k=10, top_p=0.9, temperature=1.5, sample_seed=s).tokens[0]
             for s in (1, 1, 2)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    streamed: list[tuple[int, int]] = []
    spec.generate(PROMPT, 5, on_token=lambda i, t: streamed.append((i, t)))
    assert streamed == [(0, t) for t in free[:5]]


def word_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(64)}, unk_token="w0"))  # id i is the word wi
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(path))
    return path


def test_prompt_text_through_a_tokenizer_and_a_batch_file(tmp_path) -> None:
    tok = word_tokenizer(tmp_path / "tokenizer.json")
    ids = [5, 17, 3]
    run = flashc_cli("generate", "specs/gpt2.flash", *SETS, "--tokenizer", str(tok), "--prompt", "w5 w17 w3",
                     "--max-new-tokens", "6")
    assert run.returncode == 0, run.stderr
    want = flashc.load("specs/gpt2.flash", **SIZES).generate(ids, 6).tokens[0]
    assert run.stdout.split() == [f"w{t}" for t in want]
    (tmp_path / "prompts.txt").write_text("w5 w17 w3\nw1 w2\nw5 w17 w3\n")
    run = flashc_cli("generate", "specs/gpt2.flash", *SETS, "--tokenizer", str(tok), "--batch",
                     str(tmp_path / "prompts.txt"), "--max-new-tokens", "6")
    lines = run.stdout.splitlines()
    assert len(lines) == 3 and lines[0] == lines[2] and lines[0].split() == [f"w{t}" for t in want]


@pytest.mark.parametrize("args, message", [
    (["--prompt", "hello", "--max-new-tokens", "3"], "--prompt needs --tokenizer"),
    (["--prompt-ids", "1,x", "--max-new-tokens", "3"], "--prompt-ids expects token ids"),
    (["--prompt-ids", "1,2", "--max-new-tokens", "3", "--greedy", "--top-k", "3"], "cannot go with --top-k"),
    (["--prompt-ids", "1,2", "--max-new-tokens", "3", "--tokenizer", "nope.json"], "no such tokenizer file"),
    (["--prompt-ids", "1,2", "--max-new-tokens", "0"], "expected a whole number >= 1"),
])
def test_usage_errors_are_clean(args: list[str], message: str) -> None:
    run = flashc_cli("generate", "specs/gpt2.flash", *SETS, *args)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


def test_input_errors_are_clean(tmp_path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    run = flashc_cli("generate", "specs/gpt2.flash", *SETS, "--tokenizer", str(bad), "--prompt", "w1",
                     "--max-new-tokens", "2")
    assert run.returncode == 1 and f"{bad}: error: not a tokenizer.json file" in run.stderr
    run = flashc_cli("generate", "specs/gpt2.flash", *SETS, "--prompt-ids", "1,99999", "--max-new-tokens", "2")
    assert run.returncode == 1 and "error: onnxruntime failed at step 1" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    run = flashc_cli("generate", "specs/text_classifier.flash", "--prompt-ids", "1,2", "--max-new-tokens", "2")
    assert run.returncode == 1 and "--kv-cache caches causal self-attention" in run.stderr
    np.testing.assert_equal(run.stdout, "")
