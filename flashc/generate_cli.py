"""`flashc generate`: prompts in (text through a tokenizer.json, or ids), tokens streamed out.

A .flash spec is compiled with a KV cache into a temporary ONNX file first
(`--weights`, `--set`, `--dtype`, `--quantize` as for `compile`); an .onnx file
is run as it is (with or without a cache). New tokens go to stdout as they are
chosen (a single prompt) or one line per prompt (`--batch FILE`); the tokens/s
line goes to stderr. Errors are the CLI's: `path: error: ...`, no traceback.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flashc.argtypes import positive_int
from flashc.diagnostics import Span, UsageError, error


def add_arguments(c: argparse.ArgumentParser) -> None:
    """The options of `flashc generate` (the spec options --set/--model/--include are added by the CLI)."""
    c.add_argument("--tokenizer", metavar="FILE", help="a tokenizer.json (the `tokenizers` library's format)")
    c.add_argument("--prompt", help="the prompt text (needs --tokenizer)")
    c.add_argument("--prompt-ids", metavar="IDS", help="the prompt as token ids: 1,2,3")
    c.add_argument("--batch", metavar="FILE", help="one prompt a line (text with --tokenizer, else ids 1,2,3); "
                   "prompts of equal length run as one batch; one output line per prompt")
    c.add_argument("--max-new-tokens", type=positive_int, required=True, metavar="N")
    c.add_argument("--greedy", action="store_true", help="always the most likely token (the default without "
                   "--temperature/--top-k/--top-p)")
    c.add_argument("--temperature", type=float, help="sample with this temperature (> 0)")
    c.add_argument("--top-k", type=positive_int, help="sample among the k most likely tokens")
    c.add_argument("--top-p", type=float, help="sample among the most likely tokens holding this much probability")
    c.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    c.add_argument("--stop-ids", metavar="IDS", help="end a sequence at any of these token ids: 50256 or 2,3")
    c.add_argument("--threads", type=positive_int, help="onnxruntime intra-op threads (default: its own choice)")
    c.add_argument("--init-seed", type=int, default=0, help="a spec without --weights: seed of its weights")
    c.add_argument("--opset", type=int, default=None, help="a spec: ONNX opset (default 23)")
    c.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="a spec: compute dtype")
    c.add_argument("--quantize", choices=("int8",), help="a spec: int8 weights of the matrix products")


def parse_ids(text: str, what: str) -> list[int]:
    """`1,2,3` (spaces allowed) -> [1, 2, 3]; anything else is a usage error naming ``what``."""
    parts = [p for p in text.replace(",", " ").split()]
    if not parts or not all(p.isdigit() for p in parts):
        raise UsageError(f"{what} expects token ids >= 0 separated by commas, got {text!r}")
    return [int(p) for p in parts]


def load_tokenizer(path: str) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UsageError("--tokenizer needs the `tokenizers` library: pip install 'flashc[generate]'") from None
    if not Path(path).is_file():
        raise UsageError(f"no such tokenizer file: {path}")
    try:
        return Tokenizer.from_file(path)
    except Exception as exc:  # the library raises its own exception types
        raise error(Span.nowhere(path), f"not a tokenizer.json file: {' '.join(str(exc).split())[:200]}") from None


def _prompts(args: argparse.Namespace, tokenizer: Any) -> list[list[int]]:
    given = [k for k in ("prompt", "prompt_ids", "batch") if getattr(args, k) is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --prompt TEXT (with --tokenizer), --prompt-ids 1,2,3 or --batch FILE")
    if args.prompt is not None and tokenizer is None:
        raise UsageError("--prompt needs --tokenizer tokenizer.json (or give --prompt-ids)")
    if args.prompt is not None:
        lines = [args.prompt]
    elif args.prompt_ids is not None:
        return [parse_ids(args.prompt_ids, "--prompt-ids")]
    else:
        if not Path(args.batch).is_file():
            raise UsageError(f"no such batch file: {args.batch}")
        try:
            lines = [line for line in Path(args.batch).read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise error(Span.nowhere(args.batch), "is not UTF-8 text") from None
        if not lines:
            raise error(Span.nowhere(args.batch), "holds no prompt (one a line)")
        if tokenizer is None:
            return [parse_ids(line, f"{args.batch}: a line") for line in lines]
    prompts = [tokenizer.encode(line).ids for line in lines]
    empty = [i for i, p in enumerate(prompts) if not p]
    if empty:
        raise UsageError(f"prompt {empty[0] + 1} encodes to no tokens")
    return prompts


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    sampled = [k for k in ("temperature", "top_k", "top_p") if getattr(args, k) is not None]
    if args.greedy and sampled:
        raise UsageError(f"--greedy takes the most likely token; it cannot go with --{sampled[0].replace('_', '-')}")
    if args.temperature is not None and not args.temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    return {"greedy": not sampled, "temperature": args.temperature or 1.0, "top_k": args.top_k,
            "top_p": args.top_p, "sample_seed": args.seed}


def _model_file(args: argparse.Namespace, tmp: str, spec_and_weights: Callable[[], tuple[Any, Any]]) -> Path:
    """The .onnx file to run: the given one, or the spec compiled with a KV cache."""
    source = Path(args.spec)
    if not source.is_file():
        raise UsageError(f"no such file: {args.spec}")
    if source.suffix == ".onnx":
        if args.weights or args.set or args.dtype != "float32" or args.quantize or args.opset:
            raise UsageError("--weights, --set, --opset, --dtype and --quantize apply to a .flash spec, "
                             "not to an .onnx file (compile it with them)")
        return source
    spec, weights = spec_and_weights()
    return spec.to_onnx(Path(tmp) / f"{spec.name}.onnx", weights, args.init_seed, args.opset, kv_cache=True,
                        dtype=args.dtype, quantize=args.quantize)


def run_generate(args: argparse.Namespace, spec_and_weights: Callable[[], tuple[Any, Any]]) -> int:
    """The command; ``spec_and_weights()`` loads a .flash spec and its --weights as `compile` does."""
    from flashc.generate import GenerationError, Generator

    if args.opset is not None:
        from flashc.backends.onnx import DEFAULT_OPSET, MIN_OPSET

        if not MIN_OPSET <= args.opset <= DEFAULT_OPSET:
            raise UsageError(f"--opset {args.opset} is not supported; use {MIN_OPSET} to {DEFAULT_OPSET}")
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    prompts = _prompts(args, tokenizer)
    sampling = _sampling(args)
    stops = parse_ids(args.stop_ids, "--stop-ids") if args.stop_ids else []
    with tempfile.TemporaryDirectory() as tmp:
        model = _model_file(args, tmp, spec_and_weights)
        try:
            generator = Generator(model, args.threads)
        except GenerationError as exc:
            raise error(Span.nowhere(args.spec), str(exc)) from None
        except Exception as exc:  # onnxruntime's own exception types
            raise error(Span.nowhere(args.spec), f"onnxruntime cannot load this model: {' '.join(str(exc).split())}") from None
        results: dict[int, list[int]] = {}
        total_tokens, total_seconds, steps = 0, 0.0, []
        groups: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(len(p), []).append(i)
        stream = _Stream(tokenizer) if len(prompts) == 1 else None
        for members in groups.values():
            try:
                run = generator.generate([prompts[i] for i in members], args.max_new_tokens, stop_ids=stops,
                                         on_token=stream.add if stream else None, **sampling)
            except GenerationError as exc:
                raise error(Span.nowhere(args.spec), str(exc)) from None
            for i, toks in zip(members, run.tokens):
                results[i] = toks
            total_tokens += run.new_tokens
            total_seconds += run.prompt_seconds + sum(run.step_seconds)
            steps += run.step_seconds
        if stream is None:
            for i in range(len(prompts)):
                print(_render(tokenizer, results[i]), flush=True)
        else:
            print(flush=True)
    cache = "KV cache" if generator.cached else "no cache: each step reruns the sequence"
    rate = total_tokens / total_seconds if total_seconds else float("inf")
    per_step = f", {1000 * sum(steps) / len(steps):.1f} ms per later step" if steps else ""
    print(f"{total_tokens} tokens in {total_seconds:.2f} s: {rate:.1f} tokens/s ({len(prompts)} prompt(s), {cache}"
          f"{per_step})", file=sys.stderr)
    return 0


def _render(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids) if tokenizer is not None else " ".join(map(str, ids))


class _Stream:
    """Writes one sequence's tokens to stdout as they come: decoded text (new characters only) or ids."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.ids, self.shown = tokenizer, [], ""

    def add(self, sequence: int, token: int) -> None:
        self.ids.append(token)
        if self.tokenizer is None:
            sys.stdout.write(("" if len(self.ids) == 1 else " ") + str(token))
        else:
            text = self.tokenizer.decode(self.ids)
            if text.startswith(self.shown):
                sys.stdout.write(text[len(self.shown):])
                self.shown = text
        sys.stdout.flush()
