"""Text generation in onnxruntime: a prompt, then one token per step through a KV-cached graph.

The cache never leaves onnxruntime: each step's ``present.N.key/value`` outputs
are OrtValues that are bound, as they are, as the next step's
``past_key_values.N.key/value`` inputs (I/O binding), so no step copies the
cache to or from numpy. A graph compiled without ``--kv-cache`` also works:
every step then runs the whole sequence again (the quadratic cost the cache
removes; the bench shows both). Sampling is greedy or temperature / top-k /
top-p from a seeded generator. Nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."


@dataclass
class Sampling:
    """How the next token is chosen from the logits: argmax, or a seeded draw."""

    greedy: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        self.rng = np.random.default_rng(self.seed)

    def choose(self, logits: np.ndarray) -> np.ndarray:
        """One token id per row of ``logits`` [B, vocab]."""
        if self.greedy:
            return logits.argmax(-1)
        scores = logits.astype(np.float64) / self.temperature
        if self.top_k is not None and self.top_k < scores.shape[-1]:
            kth = np.partition(scores, -self.top_k, axis=-1)[:, -self.top_k][:, None]
            scores = np.where(scores < kth, -np.inf, scores)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        if self.top_p is not None and self.top_p < 1:  # the smallest set of tokens holding top_p of the mass
            order = np.argsort(-probs, axis=-1)
            sorted_probs = np.take_along_axis(probs, order, -1)
            drop = np.cumsum(sorted_probs, -1) - sorted_probs >= self.top_p
            sorted_probs[drop] = 0
            probs = np.zeros_like(probs)
            np.put_along_axis(probs, order, sorted_probs, -1)
            probs /= probs.sum(-1, keepdims=True)
        return np.array([self.rng.choice(probs.shape[-1], p=row) for row in probs])


@dataclass
class Generation:
    """What one call produced: the new tokens of each sequence and how long each step took."""

    tokens: list[list[int]]
    prompt_seconds: float  # the prompt step (prefill), which also gives the first new token
    step_seconds: list[float]  # each later step, one token per sequence

    @property
    def new_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)

    @property
    def tokens_per_second(self) -> float:
        total = self.prompt_seconds + sum(self.step_seconds)
        return self.new_tokens / total if total > 0 else float("inf")


class GenerationError(Exception):
    """onnxruntime refused a step (a model that is not a decoder, a sequence past its context)."""


class Generator:
    """An onnxruntime session over a decoder's ONNX file, ready to generate."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.ort = ort
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        self.pasts = [i for i in inputs if i.name.startswith(PAST_PREFIX)]
        rest = [i for i in inputs if not i.name.startswith(PAST_PREFIX)]
        if any(i.name.startswith("encoder_key_values.") for i in rest):
            raise GenerationError("this is the cached decoder of an encoder-decoder (its encoder is NAME.encoder.onnx); "
                                  "generate runs decoder-only models so far")
        if len(rest) != 1 or rest[0].type not in ("tensor(int64)", "tensor(int32)") or len(rest[0].shape) != 2:
            raise GenerationError("generate needs a model with one token input int64[B, T] (and, with --kv-cache, "
                                  f"the past_key_values.N inputs); this one takes {', '.join(i.name for i in rest)}")
        self.token_input = rest[0]
        outputs = [o.name for o in self.session.get_outputs()]
        self.presents = [PRESENT_PREFIX + p.name[len(PAST_PREFIX):] for p in self.pasts]
        missing = [p for p in self.presents if p not in outputs]
        if missing:
            raise GenerationError(f"the model takes a cache but does not return {missing[0]}")
        self.logits = next(o for o in outputs if not o.startswith(PRESENT_PREFIX))

    @property
    def cached(self) -> bool:
        return bool(self.pasts)

    def generate(self, prompt_ids: Sequence[int] | Sequence[Sequence[int]], max_new_tokens: int,
                 greedy: bool = True, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 sample_seed: int = 0, stop_ids: Sequence[int] = (),
                 on_token: Callable[[int, int], None] | None = None) -> Generation:
        """New tokens after each prompt (all prompts of one call have the same length: they run as one batch).

        ``on_token(sequence, token)`` is called as each token is chosen; a sequence ends at a stop id
        (the stop id is kept) or after ``max_new_tokens``.
        """
        prompts = [list(prompt_ids)] if prompt_ids and isinstance(prompt_ids[0], (int, np.integer)) else \
            [list(p) for p in prompt_ids]
        if not prompts or not prompts[0] or len({len(p) for p in prompts}) != 1:
            raise ValueError("generate needs one or more non-empty prompts of the same length")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        sampling = Sampling(greedy, temperature, top_k, top_p, sample_seed)
        stops = set(int(s) for s in stop_ids)
        tokens = np.asarray(prompts, dtype=np.int64)
        out: list[list[int]] = [[] for _ in prompts]
        done = np.zeros(len(prompts), dtype=bool)
        step = self._cached_step if self.cached else self._full_step
        state: dict[str, Any] = {}
        times: list[float] = []
        feed = tokens
        for n in range(max_new_tokens):
            start = time.perf_counter()
            logits = step(feed, tokens, state, n)
            chosen = sampling.choose(logits)
            times.append(time.perf_counter() - start)
            for i, token in enumerate(chosen):
                if not done[i]:
                    out[i].append(int(token))
                    if on_token is not None:
                        on_token(i, int(token))
                    done[i] = int(token) in stops
            if done.all():
                break
            feed = chosen.astype(np.int64)[:, None]
            tokens = np.concatenate([tokens, feed], axis=1)
        return Generation(out, times[0], times[1:])

    def _run_failed(self, exc: Exception, n: int) -> GenerationError:
        return GenerationError(f"onnxruntime failed at step {n + 1}: {' '.join(str(exc).split())}")

    def _full_step(self, feed: np.ndarray, tokens: np.ndarray, state: dict[str, Any], n: int) -> np.ndarray:
        """No cache: the whole sequence again; the logits of its last position."""
        try:
            (logits,) = self.session.run([self.logits], {self.token_input.name: self._ids(tokens)})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise self._run_failed(exc, n) from None
        return logits[:, -1]

    def _ids(self, ids: np.ndarray) -> np.ndarray:
        return ids.astype(np.int32) if self.token_input.type == "tensor(int32)" else ids

    def _cached_step(self, feed: np.ndarray, tokens: np.ndarray, state: dict[str, Any], n: int) -> np.ndarray:
        """The new tokens only; the cache stays in onnxruntime's memory, bound from outputs to inputs."""
        binding = state.get("binding")
        if binding is None:
            binding = state["binding"] = self.session.io_binding()
            batch = feed.shape[0]
            caches = [self.ort.OrtValue.ortvalue_from_numpy(
                np.zeros((batch, p.shape[1], 0, p.shape[3]), dtype=np.float16 if "float16" in p.type else np.float32))
                for p in self.pasts]
        else:
            caches = state["caches"]
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        binding.bind_cpu_input(self.token_input.name, np.ascontiguousarray(self._ids(feed)))
        for past, value in zip(self.pasts, caches):
            binding.bind_ortvalue_input(past.name, value)
        binding.bind_output(self.logits, "cpu")
        for name in self.presents:
            binding.bind_output(name, "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:
            raise self._run_failed(exc, n) from None
        outputs = binding.get_outputs()
        state["caches"] = outputs[1:]  # this step's present: the next step's past, never copied
        return outputs[0].numpy()[:, -1]
