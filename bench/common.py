"""Shared pieces: tables, interleaved timing, child-process rusage, the machine's facts."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
MB = 1024 * 1024


# --- tables --------------------------------------------------------------------------------------


@dataclass
class Column:
    key: str
    header: str
    fmt: str | Callable[[Any], str] = "{}"

    def render(self, value: Any) -> str:
        if value is None:
            return "-"
        if callable(self.fmt):
            return self.fmt(value)
        if isinstance(value, str):
            return value
        return self.fmt.format(value)


@dataclass
class Table:
    """One printed table; its rows hold raw values and go to the JSON as they are."""

    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> dict[str, Any]:
        self.rows.append(row)
        return row

    def render(self) -> str:
        cells = [[c.header for c in self.columns]]
        cells += [[c.render(r.get(c.key)) for c in self.columns] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]

        def line(row: list[str]) -> str:
            return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()

        out = [f"== {self.title}", line(cells[0]), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in cells[1:]]
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": [c.key for c in self.columns], "headers": [c.header for c in self.columns],
                "rows": self.rows, "notes": self.notes}


def ratio_fmt(value: float) -> str:
    return f"{value:.3f}x"


def ms_fmt(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def s_fmt(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def mb_fmt(value: float) -> str:
    return f"{value:,.0f}"


def sci_fmt(value: float) -> str:
    return f"{value:.1e}"


# --- timing --------------------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def quantile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def clock(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Seconds of each callable, run round-robin so drift hits all alike; every other round runs in
    reverse order (A, B, C, C, B, A, ...) so no callable always follows the same neighbour."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for rep in range(reps):
        for k in order if rep % 2 == 0 else order[::-1]:
            out[k].append(clock(fns[k]))
    return out


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x / y for x, y in zip(a, b)]


# --- child processes -----------------------------------------------------------------------------


@dataclass
class ChildRun:
    argv: list[str]
    seconds: float
    maxrss_bytes: int
    returncode: int
    stderr_tail: str


# A child's ru_maxrss counts what it inherited at fork time, so a child forked straight from this
# (large) process would report at least this process's RSS. A small launcher forks the real command
# instead and reports that one's peak RSS and wall time.
LAUNCHER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)\n"
    "t = time.perf_counter() - t\n"
    "open(sys.argv[1], 'w').write(f'{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {t}')\n"
    "sys.exit(rc)\n"
)


def run_child(argv: list[str], cwd: Path = ROOT) -> ChildRun:
    """Run a command to its end: its own wall time and peak RSS (Linux reports ru_maxrss in KiB)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rusage"
        err_path = Path(tmp) / "stderr"
        with err_path.open("wb") as err:
            proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *argv], cwd=cwd,
                                  stdout=subprocess.DEVNULL, stderr=err)
        tail = err_path.read_text("utf-8", "replace")[-2000:]
        maxrss_kb, seconds = report.read_text().split() if report.exists() else ("0", "nan")
    return ChildRun(argv, float(seconds), int(maxrss_kb) * 1024, proc.returncode, tail)


def flashc_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flashc.cli", *args]


# --- the machine ---------------------------------------------------------------------------------


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "numpy", "flashc", "onnxscript", "onnx_ir"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "cpu": model, "logical_cpus": os.cpu_count(), "loadavg_at_start": load}


def sgemm_peak(threads: int, n: int = 2048, reps: int = 10) -> dict[str, Any]:
    """torch.mm of two n x n float32 matrices: GFLOP/s, median of `reps` after a warm-up."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    seconds = [clock(lambda: torch.mm(a, b, out=out)) for _ in range(reps)]
    flops = 2 * n**3
    return {"gflops": flops / median(seconds) / 1e9, "best_gflops": flops / min(seconds) / 1e9, "threads": threads,
            "n": n, "reps": reps, "median_s": median(seconds)}
