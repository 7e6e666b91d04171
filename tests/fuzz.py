"""Seeded mutation fuzzing of the front end: only flashc's own errors may escape, nothing may hang.

Every spec in specs/ is mutated the way a careless or hostile user would (characters cut,
doubled, swapped; grammar tokens, keywords, huge numbers and hostile imports inserted;
blocks made to apply themselves; chains lengthened; brackets nested; parameters overridden
with extreme values) and loaded. Each case runs in a worker process with a time limit, so a
hang is caught and counted instead of stalling the run, and each case is reproducible from
(seed, index) alone.

    python -m tests.fuzz --cases 100000 [--seed 0] [--workers 2] [--timeout 20] [--out DIR]

prints the counts of clean errors, successes, tracebacks, hangs, malformed diagnostics and
leaks (an error that quotes a file which is not a spec), and exits 1 if any of the last four
is non-zero. tests/test_fuzz.py runs a few hundred cases of the same generator in CI.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import sys
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
CANARY = "flashc-fuzz-canary-7f3a"  # in the workers' environment: must never appear in an error
BAD = ("traceback", "hang", "malformed", "leak")

TOKENS = [
    "(", ")", "[", "]", "{", "}", "|>", "|", "=", ",", ":", ".", "+", "-", "*", "/", "//", "**", "#", '"', "'",
    "0", "1", "2", "-1", "0.5", "1e3", "1_000", ".5", "99999999999999999999", "1e999", "1e308 * 10", "nan", "inf",
    "1000000000", "10 ** 12", "2 ** 64", "x", "h", "B", "T", "d", "tokens", "image", "logits", "wte", "Decoder",
    "weight", "linear", "conv2d", "attention", "repeat", "sequential", "reshape", "embedding", "layernorm",
    "dropout", "flatten", "positions", "relu", "softmax", "model", "block", "input", "output", "return", "train",
    "target", "loss", "optimizer", "import", "from", "as", "true", "false", "shared", "causal", "bias",
    "lambda", "class", "None", "__init__", "__class__", "_modules", "training", "forward", "parameters", "zip",
    '"s"', '"*.weight"', '"\\n"', "float32", "int64", "bool", "\n", " ", "\t", "\r\n", "é", "\u2028", "\x00",
]
HOSTILE_IMPORTS = ["/proc/self/environ", "../../etc/passwd", "/dev/zero", "/etc/passwd", "fuzz.flash", "x.flash",
                   "../specs/gpt2.flash", "/dev/stdin.flash", "\\u0000.flash"]
EXTREMES = [0, -1, 1, 2, 3, 64, 10**9, 10**12, 2**63, -(2**63), 1e308, float("inf"), float("-inf"), float("nan"),
            1e-300, True, False, "", "x", "lambda", (1, 2), (float("inf"), 1)]


def specs() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(SPECS_DIR.glob("*.flash"))}


def _mutate_text(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["delete", "duplicate", "swap", "insert", "insert", "truncate", "delete_run", "self",
                           "nest", "chain", "import", "line"])
        i = rng.randint(0, len(text))
        if kind == "delete" and text:
            i = min(i, len(text) - 1)
            text = text[:i] + text[i + 1:]
        elif kind == "delete_run":
            text = text[:i] + text[i + rng.randint(1, 30):]
        elif kind == "duplicate":
            j = min(len(text), i + rng.randint(1, 12))
            text = text[:i] + text[i:j] * rng.choice([2, 2, 3, 50]) + text[j:]
        elif kind == "swap" and len(text) >= 2:
            a, b = sorted((min(i, len(text) - 1), rng.randrange(len(text))))
            if a != b:
                text = text[:a] + text[b] + text[a + 1:b] + text[a] + text[b + 1:]
        elif kind == "insert":
            text = text[:i] + rng.choice(["", " "]) + rng.choice(TOKENS) + rng.choice(["", " "]) + text[i:]
        elif kind == "truncate":
            text = text[:i]
        elif kind == "self":  # a block applies itself (directly or through its neighbour)
            names = re.findall(r"block (\w+)", text)
            returns = [m.end() for m in re.finditer(r"return [^\n]*", text)]
            if names and returns:
                end = rng.choice(returns)
                text = text[:end] + f" |> {rng.choice(names)}" + text[end:]
        elif kind == "nest":
            k = rng.choice([10, 60, 70, 200, 2000])
            text = text[:i] + "(" * k + text[i:i + 1] + ")" * k + text[i + 1:]
        elif kind == "chain":
            k = rng.choice([10, 500, 3000])
            text = text.replace("|> relu", "|> relu" * k, 1).replace("|> gelu", "|> gelu" * k, 1)
        elif kind == "import":
            path = rng.choice(HOSTILE_IMPORTS)
            line = f'import "{path}"\n' if rng.random() < 0.7 else f'from "{path}" import Decoder\n'
            text = line + text
        elif kind == "line":  # a whole line doubled or moved
            lines = text.split("\n")
            if len(lines) > 2:
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines.insert(b, lines[a])
                text = "\n".join(lines)
    return text


def make_case(seed: int, index: int, corpus: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    """(spec name, text, overrides) of case ``index``: the same on every machine and run."""
    rng = random.Random(seed * 1_000_003 + index)
    name = rng.choice(sorted(corpus))
    text = corpus[name]
    overrides: dict[str, Any] = {}
    if rng.random() < 0.25:  # parameter overrides, as --set or load(**kw) give them
        params = re.findall(r"(\w+) = [^,)]+", text.split("{", 1)[0])
        for _ in range(rng.randint(1, 2)):
            key = rng.choice(params) if params and rng.random() < 0.9 else rng.choice(["nope", "class", "_x"])
            overrides[key] = rng.choice(EXTREMES)
    if not overrides or rng.random() < 0.5:
        text = _mutate_text(text, rng)
    return name, text, overrides


def run_case(text: str, overrides: dict[str, Any]) -> tuple[str, str]:
    """(outcome, detail) of loading one case in this process."""
    import flashc
    from flashc import FlashError

    overrides = {k: v for k, v in overrides.items() if k not in ("file", "include")}
    try:
        flashc.loads(text, file="fuzz.flash", **overrides)
    except FlashError as err:
        rendered = str(err)
        if CANARY in rendered or "root:x:0:0" in rendered:
            return "leak", rendered[:2000]
        bad = [d for d in err.diagnostics if not (d.message and d.span.line >= 1 and d.span.col >= 1)]
        if not err.diagnostics or bad:
            return "malformed", rendered[:2000]
        return "clean_error", err.diagnostics[0].message[:120]
    except Exception:  # noqa: BLE001  (exactly what the fuzzer is looking for)
        return "traceback", traceback.format_exc()[-3000:]
    return "success", ""


def _worker(conn: Connection, seed: int, cwd: str) -> None:
    os.environ["FLASHC_FUZZ_CANARY"] = CANARY
    os.chdir(cwd)  # imports of a case resolve here: an empty folder
    corpus = specs()
    while True:
        index = conn.recv()
        if index is None:
            return
        _, text, overrides = make_case(seed, index, corpus)
        conn.send((index, *run_case(text, overrides)))


def _cpu_seconds(pid: int) -> float | None:
    """CPU time a process has used (Linux /proc), or None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Pool:
    """Worker processes, each given one case at a time; a case past the time limit is a hang
    (its worker is killed and replaced)."""

    def __init__(self, workers: int, seed: int, timeout: float, cwd: str) -> None:
        methods = multiprocessing.get_all_start_methods()
        self.ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.seed, self.timeout, self.cwd = seed, timeout, cwd
        self.slots: list[list[Any]] = [self._start() for _ in range(workers)]

    def _start(self) -> list[Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.seed, self.cwd), daemon=True)
        proc.start()
        child.close()
        return [proc, parent, None, 0.0, 0.0]  # process, connection, case index, started at, its CPU seconds then

    def run(self, indices: range, on_result: Any) -> None:
        pending = iter(indices)
        busy = 0
        for slot in self.slots:
            busy += self._feed(slot, pending)
        while busy:
            ready = wait([s[1] for s in self.slots if s[2] is not None], timeout=1.0)
            now = time.monotonic()
            for slot in self.slots:
                if slot[2] is None:
                    continue
                if slot[1] in ready:
                    try:
                        index, outcome, detail = slot[1].recv()
                    except (EOFError, OSError):  # the worker died (e.g. killed for memory)
                        index, outcome, detail = slot[2], "traceback", "worker process died"
                        slot[:] = self._start()
                    on_result(index, outcome, detail)
                elif self._hung(slot, now):
                    on_result(slot[2], "hang", f"no answer after {self.timeout:.0f} s of CPU time")
                    slot[0].kill()
                    slot[0].join()
                    slot[:] = self._start()
                else:
                    continue
                slot[2] = None
                busy -= 1
                busy += self._feed(slot, pending)

    def _hung(self, slot: list[Any], now: float) -> bool:
        """Past the limit in CPU time: a machine busy with other work only makes a case slower, not hung.
        A case that waits without computing (a blocking read) is caught by wall time, ten limits long."""
        if now - slot[3] <= self.timeout:
            return False
        cpu = _cpu_seconds(slot[0].pid)
        return cpu is None or cpu - slot[4] > self.timeout or now - slot[3] > 10 * self.timeout

    def _feed(self, slot: list[Any], pending: Any) -> int:
        index = next(pending, None)
        if index is None:
            return 0
        slot[1].send(index)
        slot[2], slot[3], slot[4] = index, time.monotonic(), _cpu_seconds(slot[0].pid) or 0.0
        return 1

    def close(self) -> None:
        for proc, conn, *_ in self.slots:
            try:
                conn.send(None)
            except OSError:
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


def fuzz(cases: int, seed: int = 0, workers: int = 2, timeout: float = 20.0, out: Path | None = None,
         progress: bool = False) -> dict[str, Any]:
    """Run ``cases`` cases; return the counts and the first examples of each bad outcome."""
    import tempfile

    counts: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = {k: [] for k in BAD}
    corpus = specs()
    started = time.monotonic()

    def record(index: int, outcome: str, detail: str) -> None:
        counts[outcome] += 1
        if outcome in BAD and len(examples[outcome]) < 20:
            name, text, overrides = make_case(seed, index, corpus)
            examples[outcome].append({"index": index, "spec": name, "overrides": repr(overrides), "detail": detail})
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{outcome}-{index}.flash").write_text(text, encoding="utf-8", errors="replace")
        done = sum(counts.values())
        if progress and done % 1000 == 0:
            print(f"{done:,} cases, {time.monotonic() - started:.0f} s: {dict(counts)}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="flashc-fuzz-") as cwd:
        pool = Pool(workers, seed, timeout, cwd)
        try:
            pool.run(range(cases), record)
        finally:
            pool.close()
    return {"cases": cases, "seed": seed, "seconds": round(time.monotonic() - started, 1),
            "counts": {k: counts.get(k, 0) for k in ("clean_error", "success", *BAD)}, "examples": examples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before a case counts as a hang")
    p.add_argument("--out", type=Path, help="write each bad case's spec here")
    args = p.parse_args(argv)
    report = fuzz(args.cases, args.seed, args.workers, args.timeout, args.out, progress=True)
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=1))
    for outcome in BAD:
        for ex in report["examples"][outcome][:3]:
            print(f"--- {outcome} #{ex['index']} ({ex['spec']}, overrides {ex['overrides']}):\n{ex['detail']}")
    return 1 if any(report["counts"][k] for k in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
