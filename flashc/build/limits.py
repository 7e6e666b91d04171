"""Limits the builder checks before it does the work: a hostile or mistyped spec ends in a
clear error saying the number and the limit, never in a hang, a stack overflow or an
out-of-memory crash.

- Depth: every nested expression costs one level and every block application
  :data:`BLOCK_COST` more, up to :data:`MAX_DEPTH`, so the recursive evaluator stays far
  inside Python's stack (a block that applies itself is caught earlier, by name).
- Work: op applications plus block applications in one model, up to :data:`MAX_WORK`
  (GPT-2 small needs about 300; a 100,000-stage pipeline fits; the most is about 10 s of
  work). A `repeat` count above it is refused before the first copy is built.
- Memory: each weight must fit in the machine's memory (compiling holds one weight at a
  time, streaming the rest to disk), and all weights together must stay within a budget of
  at least 1 TiB or the machine's memory if larger. ``FLASHC_MAX_BYTES`` (``4000000000``,
  ``512M``, ``64G``, ``1.5T``) sets both: no weight and no total above it. So `check` of a
  7B-parameter model works on a laptop, and a layer `d = 10**12` wide is refused at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from flashc.diagnostics import Span, error

MAX_DEPTH = 120
BLOCK_COST = 3
MAX_WORK = 150_000
BUDGET_ENV = "FLASHC_MAX_BYTES"
FALLBACK_BUDGET = 16 * 2**30  # where the machine's memory cannot be read
MIN_TOTAL = 2**40  # the default budget for all weights: 1 TiB
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def machine_memory() -> int | None:
    """Physical memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class Budget:
    """Byte limits for one weight and for all weights, each with where it comes from."""

    tensor: int
    tensor_origin: str
    total: int
    total_origin: str


def weight_budget() -> Budget:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", raw, re.IGNORECASE)
        if not match:
            raise error(Span.nowhere(BUDGET_ENV), f"cannot read {BUDGET_ENV}={raw!r}",
                        "give bytes, or a number with K, M, G or T: 64G")
        limit = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
        return Budget(limit, f"{BUDGET_ENV}={raw}", limit, f"{BUDGET_ENV}={raw}")
    memory = machine_memory()
    tensor, origin = (FALLBACK_BUDGET, "the default") if memory is None else (memory, "this machine's memory")
    return Budget(tensor, origin, max(MIN_TOTAL, tensor), "the default" if tensor < MIN_TOTAL else origin)


def human_bytes(n: int) -> str:
    """`3.6 TiB`: sizes in the binary units memory is sold in."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


ITEMSIZE = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1,
            "bool": 1}
MAX_RANK = 32  # axes of one tensor; torch and onnxruntime kernels stop well before a rank of 64
