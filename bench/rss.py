"""Section `rss`: peak resident memory of `flashc check` and `flashc compile --target onnx` for
GPT-2 small, each a child process measured alone (os.wait4), against the bytes of its weights;
then the compile again under bench/rss_probe.py, which splits its time and peak by stage."""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.common import MB, Column, Table, flashc_cli, mb_fmt, run_child, s_fmt
from bench.compile import _weight_bytes


def run(ctx: Any) -> tuple[Table, Table, Table]:
    ws = ctx.ws
    m = ws.models["gpt2"]
    spec = ws.spec("gpt2")
    weight_bytes = sum(_weight_bytes(w) for w in spec.graph.weights.values())
    target = 1.2 * weight_bytes + 150 * MB
    sets = [a for k, v in m.overrides.items() for a in ("--set", f"{k}={v}")]
    out = ws.folder / "gpt2.rss.onnx"
    children = {
        "python -c 'import flashc.cli, onnx'": [sys.executable, "-c", "import flashc.cli, onnx"],
        "flashc check": flashc_cli("check", str(m.path), *sets),
        "flashc compile --target onnx": flashc_cli("compile", str(m.path), "--target", "onnx", "-o", str(out), *sets),
        "python: flashc.load(spec).to_onnx(path)": [
            sys.executable, "-c", "import sys, flashc; from flashc.cli import parse_sets; "
            "flashc.load(sys.argv[1], **parse_sets(sys.argv[3:])).to_onnx(sys.argv[2])",
            str(m.path), str(out), *[f"{k}={v}" for k, v in m.overrides.items()]],
    }
    table = Table(
        f"rss: peak RSS of flashc processes for {m.label} ({spec.parameter_count:,} parameters, weights "
        f"{weight_bytes / MB:,.0f} MB; target for compile: 1.2 x weights + 150 MB = {target / MB:,.0f} MB)",
        [Column("process", "process"), Column("seconds", "s", s_fmt), Column("peak_mb", "peak RSS MB", mb_fmt),
         Column("x_weights", "x weights", "{:.2f}"), Column("verdict", "<= target"), Column("error", "error")],
    )
    for name, argv in children.items():
        out.unlink(missing_ok=True)
        child = run_child(argv)
        row = table.add(process=name, seconds=child.seconds, peak_mb=child.maxrss_bytes / MB,
                        x_weights=child.maxrss_bytes / weight_bytes, peak_bytes=child.maxrss_bytes,
                        error=None if child.returncode == 0 else f"exit {child.returncode}")
        if "compile" in name or "to_onnx" in name:
            row["verdict"] = "yes" if child.maxrss_bytes <= target else "NO"
            row["target_bytes"] = target
    table.notes.append(f"weight bytes = {weight_bytes:,} (float32, tied weights counted once)")

    out.unlink(missing_ok=True)
    probe = run_probe(m.path, sets, out)
    out.unlink(missing_ok=True)
    rises = Table(
        f"rss: what raises the peak RSS of `flashc compile --target onnx` for {m.label} (bench/rss_probe.py)",
        [Column("stage", "stage"), Column("line", "flashc line"), Column("leaf", "innermost function"),
         Column("mb", "peak +MB", mb_fmt)],
    )
    self_time = Table(
        "rss: where the same compile spends its time (cProfile self time, top 12)",
        [Column("function", "function"), Column("self_s", "self s", s_fmt), Column("cum_s", "cum s", s_fmt)],
    )
    if "error" in probe:
        rises.notes.append(f"the probe failed: {probe['error']}")
        return table, rises, self_time
    imported = probe["after_imports"]
    rises.add(stage="imports", line="python start, import flashc, onnx", leaf="-", mb=imported["VmHWM"] / MB)
    for r in probe["peak_rises"]:
        rises.add(stage=r["stage"], line=r["line"], leaf=r["leaf"], mb=r["bytes"] / MB)
    for st in probe["stages"]:
        rises.notes.append(f"after {st['stage']}: {st['seconds']:.2f} s, peak so far {st['VmHWM'] / MB:,.0f} MB, "
                           f"RSS {st['VmRSS'] / MB:,.0f} MB")
    rises.notes.append(f"{probe['samples']} samples of VmHWM and the main thread's stack, every ~2 ms")
    for r in probe["self_time"]:
        self_time.add(**r)
    self_time.notes.append(f"profiled compile: {probe['profiled_s']:.2f} s of self time in all")
    return table, rises, self_time


def run_probe(spec_path: Any, sets: list[str], out: Any) -> dict[str, Any]:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "bench.rss_probe", str(spec_path), *sets, "-o", str(out)],
                          capture_output=True, text=True, cwd=str(spec_path.parent.parent))
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
