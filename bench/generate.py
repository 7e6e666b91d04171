"""Section `generate`: GPT-2 text generation, flashc (onnxruntime, KV cache) against Hugging Face.

One seeded GPT2LMHeadModel (transformers' own initialisation, seed 0) is saved with
save_pretrained; flashc compiles specs/gpt2.flash from that folder (`--weights`, through
specs/gpt2.hf.map), so both sides hold the same numbers. Batch 1, a 32-token prompt, 128 new
tokens, greedy, the bench's thread count for torch and onnxruntime:

- transformers' `generate` (PyTorch, its own cache) against flashc's Generator on the
  `--kv-cache` graph (float32 and int8) and on the graph without a cache (every step reruns
  the sequence: the quadratic growth the cache removes);
- the cost of one step at token 8 and at token 128 (median of the 5 steps around each);
- int8: file size, next-token agreement with float32 on 1,000 positions, per-token latency;
- `compile --weights` of GPT-2 from the Hugging Face folder against copying the same bytes.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np

import flashc
from bench.common import MB, SPECS, Column, Table, median, ms_fmt, ratio_fmt

PROMPT, NEW = 32, 128


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return dict(depth=2, d=128, heads=4, vocab=2000, ctx=256)
    return dict(depth=12, d=768, heads=12, vocab=50257, ctx=1024)


def _hf_model(sizes: dict[str, int], folder: Any) -> Any:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=sizes["vocab"], n_positions=sizes["ctx"], n_embd=sizes["d"],
                                     n_layer=sizes["depth"], n_head=sizes["heads"], bos_token_id=sizes["vocab"] - 1,
                                     eos_token_id=sizes["vocab"] - 1)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    return model


def _window(steps: list[float], token: int) -> float:
    """The median cost of the steps giving tokens token - 2 .. token + 2 (steps[0] gives token 2)."""
    at = token - 2
    return median(steps[max(0, at - 2): at + 3])


def run(ctx: Any) -> tuple[Table, ...]:
    import torch

    from flashc.generate import Generator

    sizes = _sizes(ctx.quick)
    folder = ctx.ws.folder / "hf_gpt2"
    hf = _hf_model(sizes, folder)
    spec = flashc.load(SPECS / "gpt2.flash", **sizes)
    prompt = np.random.default_rng(0).integers(0, sizes["vocab"], PROMPT).tolist()

    files = {}
    start = time.perf_counter()
    files["float32"] = spec.to_onnx(ctx.ws.folder / "gpt2_kv.onnx", weights=folder, kv_cache=True)
    compile_s = time.perf_counter() - start
    weights_file = folder / "model.safetensors"
    start = time.perf_counter()
    shutil.copyfile(weights_file, ctx.ws.folder / "copy.safetensors")
    copy_s = time.perf_counter() - start
    files["int8"] = spec.to_onnx(ctx.ws.folder / "gpt2_kv_int8.onnx", weights=folder, kv_cache=True, quantize="int8")
    files["no cache"] = spec.to_onnx(ctx.ws.folder / "gpt2_plain.onnx", weights=folder)
    files["int8 no cache"] = spec.to_onnx(ctx.ws.folder / "gpt2_plain_int8.onnx", weights=folder, quantize="int8")

    with torch.inference_mode():
        ids = torch.tensor([prompt])
        hf.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)  # warm-up
        start = time.perf_counter()
        out = hf.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, use_cache=True,
                          pad_token_id=0, eos_token_id=None)
        hf_s = time.perf_counter() - start
    hf_tokens = out[0, PROMPT:].tolist()

    runs = {}
    for kind in ("float32", "int8", "no cache"):
        generator = Generator(files[kind], threads=ctx.threads)
        generator.generate(prompt, 4)  # warm-up
        runs[kind] = generator.generate(prompt, NEW)

    speed = Table(
        f"generate: GPT-2 {'(quick sizes) ' if ctx.quick else 'small '}{spec.parameter_count:,} parameters, "
        f"batch 1, {PROMPT}-token prompt, {NEW} new tokens, greedy, {ctx.threads} threads",
        [Column("engine", "engine"), Column("tokens_per_s", "tokens/s", "{:.1f}"),
         Column("vs_hf", "vs HF", ratio_fmt), Column("ms_8", "ms token 8", ms_fmt),
         Column("ms_128", "ms token 128", ms_fmt), Column("growth", "128 / 8", ratio_fmt),
         Column("same_tokens", "tokens = HF")],
        notes=["tokens/s = new tokens / wall time of the whole call (prompt step included), one run after a warm-up",
               "ms token n: median of the 5 steps around token n; tokens = HF: greedy tokens equal to transformers'",
               "HF: GPT2LMHeadModel.generate(do_sample=False, use_cache=True) in PyTorch "
               f"{torch.__version__}, inference mode",
               "optimum's ONNX Runtime class is not installed beside torch 2.13 here: not measured"],
    )
    hf_rate = NEW / hf_s
    speed.add(engine="transformers generate (cache)", tokens_per_s=hf_rate, vs_hf=1.0, same_tokens=f"{NEW}/{NEW}",
              seconds=hf_s)
    for kind, label in (("float32", "flashc generate --kv-cache"), ("int8", "flashc --kv-cache --quantize int8"),
                        ("no cache", "flashc, graph without cache")):
        r = runs[kind]
        same = sum(a == b for a, b in zip(r.tokens[0], hf_tokens))
        ms8, ms128 = _window(r.step_seconds, 8) * 1e3, _window(r.step_seconds, NEW) * 1e3
        speed.add(engine=label, tokens_per_s=r.tokens_per_second, vs_hf=r.tokens_per_second / hf_rate, ms_8=ms8,
                  ms_128=ms128, growth=ms128 / ms8, same_tokens=f"{same}/{NEW}", prompt_s=r.prompt_seconds,
                  step_s=r.step_seconds)

    agreement, positions = _agreement(files, sizes, ctx.threads)
    # The same measure on flashc's own seeded init (what `flashc init` writes): random HF weights leave many
    # near-ties between the two most likely tokens, which any weight rounding flips.
    seeded = {"no cache": spec.to_onnx(ctx.ws.folder / "gpt2_seeded.onnx"),
              "int8 no cache": spec.to_onnx(ctx.ws.folder / "gpt2_seeded_int8.onnx", quantize="int8")}
    seeded_agreement, _ = _agreement(seeded, sizes, ctx.threads)
    fp32_mb, int8_mb = files["float32"].stat().st_size / MB, files["int8"].stat().st_size / MB
    quant = Table(
        "generate: int8 (--quantize int8) beside float32, the same KV-cache graph",
        [Column("metric", "metric"), Column("float32", "float32"), Column("int8", "int8"),
         Column("ratio", "int8 / float32")],
        notes=[f"agreement: argmax of the logits at {positions} positions (4 random token sequences through the graph "
               "without cache), int8 against float32",
               "int8 is weight-only (a scale per output); the tied wte keeps no float32 copy"],
    )
    quant.add(metric="file MB", float32=f"{fp32_mb:.1f}", int8=f"{int8_mb:.1f}", ratio=f"{int8_mb / fp32_mb:.3f}x")
    quant.add(metric="ms per token (steps 2..128)", float32=f"{1e3 * median(runs['float32'].step_seconds):.2f}",
              int8=f"{1e3 * median(runs['int8'].step_seconds):.2f}",
              ratio=f"{median(runs['int8'].step_seconds) / median(runs['float32'].step_seconds):.3f}x")
    quant.add(metric="next-token agreement (HF-seeded weights)", float32="1", int8=f"{agreement:.4f}", ratio="-")
    quant.add(metric="next-token agreement (flashc-seeded weights)", float32="1", int8=f"{seeded_agreement:.4f}",
              ratio="-")

    compile_table = Table(
        "generate: compile --weights (the Hugging Face folder -> ONNX with KV cache) against copying the same bytes",
        [Column("what", "what"), Column("seconds", "seconds", "{:.3f}"), Column("ratio", "vs copy", ratio_fmt)],
        notes=[f"copy: shutil.copyfile of model.safetensors ({weights_file.stat().st_size / MB:.0f} MB), one run each"],
    )
    compile_table.add(what="Spec.to_onnx(weights=folder, kv_cache=True)", seconds=compile_s, ratio=compile_s / copy_s)
    compile_table.add(what="shutil.copyfile", seconds=copy_s, ratio=1.0)
    return speed, quant, compile_table


def _agreement(files: dict[str, Any], sizes: dict[str, int], threads: int) -> tuple[float, int]:
    """Share of positions whose most likely next token is the same in int8 and float32."""
    from bench.ort import session

    tokens = np.random.default_rng(1).integers(0, sizes["vocab"], (4, 250)).astype(np.int64)
    logits = {kind: session(files[kind], threads).run(["logits"], {"tokens": tokens})[0]
              for kind in ("no cache", "int8 no cache")}
    same = logits["no cache"].argmax(-1) == logits["int8 no cache"].argmax(-1)
    return float(same.mean()), int(same.size)
