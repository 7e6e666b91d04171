"""Section `scaling`: `check` and `compile` time of specs/encoder4.flash against its depth.

check = flashc.load(spec, depth=N) (parse, build, check); compile = the same plus to_onnx(path)
(spec text -> new ONNX file, weights included; `Spec.to_onnx(path)` also reads the file back);
compile in memory = load plus to_onnx() with no file (the ModelProto, checked, no disk). A least-squares line time = a + b * depth gives the
per-layer time b; R^2 and time(max) / time(max / 2) say whether the growth is linear. The fit uses
the fastest of the repetitions (the least disturbed on a shared machine); medians are shown too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import flashc
from bench.common import SPECS, Column, Table, clock, median, ms_fmt, s_fmt

SPEC = SPECS / "encoder4.flash"


def linear_fit(xs: list[int], ys: list[float]) -> dict[str, float]:
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    pred = a + b * x
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"a_s": float(a), "b_s": float(b), "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def verdict(r2: float, ratio: float | None) -> str:
    if ratio is not None and ratio > 2.2:
        return "superlinear"
    return "linear" if r2 >= 0.98 else "not a clean line"


def run(ctx: Any) -> tuple[Table, Table]:
    depths = [1, 2, 4, 8] if ctx.quick else [1, 2, 4, 8, 16, 24, 32, 48]
    reps = 1 if ctx.quick else 7
    out = ctx.ws.folder / "scaling.onnx"
    check: dict[int, list[float]] = {d: [] for d in depths}
    compile_: dict[int, list[float]] = {d: [] for d in depths}
    memory: dict[int, list[float]] = {d: [] for d in depths}
    params: dict[int, int] = {}
    flashc.load(SPEC, depth=1).to_onnx(out)  # first-call costs: the parser, imports of the ONNX backend
    for _ in range(reps):
        for d in depths:
            check[d].append(clock(lambda d=d: params.__setitem__(d, flashc.load(SPEC, depth=d).parameter_count)))
            out.unlink(missing_ok=True)  # a new file each time: replacing one costs a filesystem flush
            compile_[d].append(clock(lambda d=d: flashc.load(SPEC, depth=d).to_onnx(out)))
            memory[d].append(clock(lambda d=d: flashc.load(SPEC, depth=d).to_onnx()))
    out.unlink(missing_ok=True)
    table = Table(
        f"scaling: encoder4 check and compile time against depth (fastest and median of {reps})",
        [Column("depth", "depth"), Column("params", "params", "{:,}"), Column("check_s", "check s", s_fmt),
         Column("check_median_s", "(median)", s_fmt), Column("check_ms_per_layer", "check ms/layer", ms_fmt),
         Column("compile_s", "compile s", s_fmt), Column("compile_median_s", "(median)", s_fmt),
         Column("compile_ms_per_layer", "compile ms/layer", ms_fmt), Column("memory_s", "in memory s", s_fmt),
         Column("memory_ms_per_layer", "in memory ms/layer", ms_fmt)],
    )
    for d in depths:
        c, k = min(check[d]), min(compile_[d])
        table.add(depth=d, params=params[d], check_s=c, check_median_s=median(check[d]), check_ms_per_layer=c / d * 1e3,
                  compile_s=k, compile_median_s=median(compile_[d]), compile_ms_per_layer=k / d * 1e3,
                  memory_s=min(memory[d]), memory_ms_per_layer=min(memory[d]) / d * 1e3, memory_samples_s=memory[d],
                  check_samples_s=check[d], compile_samples_s=compile_[d])
    fits = Table(
        "scaling fit: time = a + b * depth (least squares over the fastest runs)",
        [Column("what", "what"), Column("a_s", "a s", s_fmt), Column("b_ms", "b ms/layer", ms_fmt),
         Column("r2", "R^2", "{:.4f}"), Column("ratio", "", "{:.2f}"), Column("verdict", "verdict")],
    )
    top = depths[-1]
    half = top // 2 if top // 2 in depths else None
    fits.columns[4].header = f"t({top})/t({half})" if half else "ratio"
    for what, series in (("check", check), ("compile", compile_), ("compile in memory", memory)):
        ys = [min(series[d]) for d in depths]
        fit = linear_fit(depths, ys)
        ratio = min(series[top]) / min(series[half]) if half else None
        fits.add(what=what, a_s=fit["a_s"], b_ms=fit["b_s"] * 1e3, r2=fit["r2"], ratio=ratio,
                 verdict=verdict(fit["r2"], ratio), depth_top=top, depth_half=half)
    fits.notes += [
        "for a line with a fixed cost a > 0 the ratio is below 2; above 2.2 the growth is called superlinear",
        "compile writes a new file and reads it back (Spec.to_onnx(path)): disk and page-cache effects of files up to "
        f"{params[top] * 4 / 2**20:.0f} MB are in it; `in memory` = load + to_onnx() with no file, the compiler alone",
    ]
    return table, fits
