"""`python -m bench.rss_probe SPEC [--set k=v] -o OUT`: where `flashc compile --target onnx` spends
time and memory, on the real code path: `flashc.cli.main(["compile", SPEC, "--target", "onnx", ...])`.

Memory: a thread reads the kernel's peak-RSS counter (VmHWM) every few milliseconds together with
the main thread's Python stack; each rise of the peak is charged to the flashc line running then
(and the innermost function below it). A C call that holds the GIL delays the sample until it
returns, so its rise is charged to the line that made the call. Time: cProfile's self time.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def where(frame: Any) -> tuple[str, str]:
    """(the innermost flashc line, the innermost function) of a stack."""
    leaf = f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}" if frame else "?"
    while frame is not None:
        name = frame.f_code.co_filename
        if "/flashc/" in name:
            return f"{_short(name)}:{frame.f_lineno} {frame.f_code.co_name}", leaf
        frame = frame.f_back
    return "(outside flashc)", leaf


def _short(filename: str) -> str:
    for marker in ("/flashc/", "/site-packages/"):
        if marker in filename:
            return filename.split(marker, 1)[1] if marker == "/site-packages/" else "flashc/" + filename.split(marker, 1)[1]
    return Path(filename).name


class Sampler(threading.Thread):
    def __init__(self, main_id: int, period: float = 0.002):
        super().__init__(daemon=True)
        self.main_id, self.period = main_id, period
        self.stage = "start"
        self.rises: dict[tuple[str, str, str], int] = {}
        self.samples = 0
        self.stop = threading.Event()
        self.last_hwm = status()["VmHWM"]

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(self.period)

    def sample(self) -> None:
        s = status()
        self.samples += 1
        if s["VmHWM"] > self.last_hwm:
            line, leaf = where(sys._current_frames().get(self.main_id))
            key = (self.stage, line, leaf)
            self.rises[key] = self.rises.get(key, 0) + s["VmHWM"] - self.last_hwm
            self.last_hwm = s["VmHWM"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    import contextlib
    import io

    import flashc.cli

    imported = status()
    sampler = Sampler(threading.get_ident())
    sampler.start()
    profile = cProfile.Profile()
    sets = [a for kv in args.set for a in ("--set", kv)]
    argv = ["compile", args.spec, "--target", "onnx", "-o", args.output, *sets]
    sampler.stage = "compile"
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        profile.enable()
        rc = flashc.cli.main(argv)
        profile.disable()
    sampler.sample()
    stages = [{"stage": "flashc.cli.main(compile)", "seconds": time.perf_counter() - start, "rc": rc, **status()}]
    sampler.stop.set()
    sampler.join()
    rises = sorted(({"stage": k[0], "line": k[1], "leaf": k[2], "bytes": v} for k, v in sampler.rises.items()),
                   key=lambda r: -r["bytes"])
    stats = pstats.Stats(profile)
    top = sorted(((v[2], v[3], f"{_short(k[0])}:{k[1]}({k[2]})") for k, v in stats.stats.items()), reverse=True)
    total = sum(v[2] for v in stats.stats.values())
    print(json.dumps({
        "after_imports": imported, "stages": stages, "peak_rises": rises[:12], "samples": sampler.samples,
        "self_time": [{"function": f, "self_s": s, "cum_s": c} for s, c, f in top[:12]], "profiled_s": total,
    }))


if __name__ == "__main__":
    main()
