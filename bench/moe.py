"""Section `moe`: a sparse mixture of experts at k = 2 of 8 experts against the dense computation of all 8.

One Mixtral-style expert FFN (w2(silu(w1 x) * w3 x)) per expert. `sparse` is
`moe(Expert, experts = 8, k = 2)`: each token runs only its 2 experts. `dense` is the
same spec with `dense = true`: every expert runs on every token, weighted by the same
routing (zero for the experts a token did not choose), so both give the same output
(checked). Both are timed in eager PyTorch (inference mode) and onnxruntime, interleaved
in one run; the ratio dense / sparse is the per-call speed-up (the expert FLOPs alone
would give experts / k = 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import flashc
from bench.common import Column, Table, interleave, median, ms_fmt, paired_ratios, ratio_fmt, sci_fmt
from bench.ort import session

SPEC = """
model MoeFfn(d = 256, ff = 512, experts = 8, k = 2, dense = false) {
  input x: float32[B, T, d]

  block Expert(h) {
    w1 = linear(ff, bias = false)
    w3 = linear(ff, bias = false)
    w2 = linear(d, bias = false)
    return (silu(w1(h)) * w3(h)) |> w2
  }

  output y = x |> moe(Expert, experts = experts, k = k, dense = dense)
}
"""


def run(ctx: Any) -> Table:
    import torch

    d, ff, batch, steps = (64, 128, 4, 64) if ctx.quick else (256, 512, 8, 128)
    experts, k = 8, 2
    reps = 3 if ctx.quick else 15
    specs = {kind: flashc.loads(SPEC, d=d, ff=ff, experts=experts, k=k, dense=kind == "dense")
             for kind in ("sparse", "dense")}
    weights = {name: t.numpy() for name, t in specs["sparse"].to_torch(seed=0).state_dict().items()}
    x = np.random.default_rng(0).standard_normal((batch, steps, d)).astype(np.float32)
    xt = torch.from_numpy(x)
    modules = {kind: spec.to_torch(weights=weights).eval() for kind, spec in specs.items()}
    sessions = {}
    for kind, spec in specs.items():
        path = ctx.ws.folder / f"moe_{kind}.onnx"
        spec.to_onnx(path, weights=weights)
        sessions[kind] = session(path, ctx.threads)
    outputs: dict[str, np.ndarray] = {}

    def torch_call(kind: str) -> Any:
        def call() -> None:
            with torch.inference_mode():
                outputs[f"torch {kind}"] = modules[kind](xt).numpy()
        return call

    def ort_call(kind: str) -> Any:
        def call() -> None:
            outputs[f"onnxruntime {kind}"] = sessions[kind].run(["y"], {"x": x})[0]
        return call

    fns = {f"{backend} {kind}": (torch_call if backend == "torch" else ort_call)(kind)
           for backend in ("torch", "onnxruntime") for kind in ("sparse", "dense")}
    for fn in fns.values():
        fn()  # warm-up: first-call allocations, ORT's arena
    times = interleave(fns, reps)
    reference = outputs["torch dense"]
    table = Table(
        f"moe: k = {k} of {experts} experts (sparse) against all {experts} on every token (dense); "
        f"tokens {batch}x{steps}, d {d}, ff {ff}, median of {reps} interleaved calls",
        [Column("backend", "backend"), Column("sparse_ms", "sparse ms", ms_fmt), Column("dense_ms", "dense ms", ms_fmt),
         Column("speedup", "dense / sparse", ratio_fmt), Column("flop_ratio", "expert FLOPs ratio", ratio_fmt),
         Column("max_abs_diff", "max |sparse - dense|", sci_fmt)],
        notes=["the same routing and weights in both; dense weights the unchosen experts by 0",
               "speed-up = median of the per-round ratios dense / sparse, measured in this run"],
    )
    for backend in ("torch", "onnxruntime"):
        sparse, dense = times[f"{backend} sparse"], times[f"{backend} dense"]
        diff = float(np.abs(outputs[f"{backend} sparse"] - reference).max())
        table.add(backend=backend, sparse_ms=median(sparse) * 1e3, dense_ms=median(dense) * 1e3,
                  speedup=median(paired_ratios(dense, sparse)), flop_ratio=experts / k, max_abs_diff=diff,
                  sparse_samples_s=sparse, dense_samples_s=dense, tokens=batch * steps, d=d, ff=ff,
                  experts=experts, k=k)
    return table
