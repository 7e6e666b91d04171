"""Section `ort`: latency of the encoder per graph in onnxruntime, and eager PyTorch, same run.

Every variant of one input shape is timed round-robin. GFLOP/s counts the encoder's matmul
FLOPs analytically (projections, attention scores and mixing, MLP) and is shown as a share of
the sgemm peak measured at the start of the run with the same thread count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import handwritten as hw
from bench.common import Column, Table, clock, interleave, median, ms_fmt, paired_ratios, ratio_fmt

BASELINE = "ort flashc"
PEAK = "sgemm torch.mm 2048 (peak)"
MM = 2048
MM_FLOPS = 2 * MM**3


def encoder_flops(params: dict[str, Any], batch: int, seq: int) -> int:
    """Matmul FLOPs of one forward: per layer 4 projections (8BTd^2), QK^T and PV (4BT^2d), MLP (4BTd*ff)."""
    d, ff, depth = params["d"], params["ff"], params["depth"]
    per_layer = 8 * batch * seq * d * d + 4 * batch * seq * seq * d + 4 * batch * seq * d * ff
    return depth * per_layer


def session(path: Any, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # idle pool threads sleep instead of spinning: the variants run in turn on 2 shared cores, and a
    # spinning pool of one session would steal them from the next variant (eager torch most of all)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def variants(ctx: Any) -> tuple[dict[str, Callable[[np.ndarray], Any]], dict[str, str]]:
    """name -> run(x); and name -> why it is missing."""
    import torch

    ws = ctx.ws
    torch.set_num_threads(ctx.threads)
    flashc_module = ws.torch_model("encoder4")
    hand = hw.encoder(**{k: ws.spec("encoder4").graph.params[k] for k in ("d", "heads", "ff", "depth", "p")}).eval()
    hw.from_flashc("encoder", hand, flashc_module.state_dict())
    ctx.hand_encoder = hand

    def eager(module: Any) -> Callable[[np.ndarray], Any]:
        def run(x: np.ndarray) -> Any:
            with torch.inference_mode():
                return module(torch.from_numpy(x))
        return run

    runs: dict[str, Callable[[np.ndarray], Any]] = {
        "eager flashc module": eager(flashc_module),
        "eager nn.TransformerEncoder": eager(hand),
    }
    missing: dict[str, str] = {}
    for graph in ws.all_graphs("encoder4"):
        name = f"ort {graph.producer}"
        if graph.path is None:
            missing[name] = graph.error or "not built"
            continue
        try:
            start = time.perf_counter()
            sess = session(graph.path, ctx.threads)
            ctx.extra.setdefault("session_load_s", {})[name] = time.perf_counter() - start
        except Exception as exc:
            missing[name] = f"onnxruntime cannot load it: {str(exc).splitlines()[0][:120]}"
            continue
        input_name = sess.get_inputs()[0].name
        runs[name] = lambda x, s=sess, n=input_name: s.run(None, {n: x})
    return runs, missing


def run(ctx: Any) -> Table:
    import torch

    ws = ctx.ws
    params = ws.spec("encoder4").graph.params
    table = Table(
        f"ort: encoder4 latency, onnxruntime (ORT_ENABLE_ALL, {ctx.threads} intra-op threads) vs eager PyTorch "
        f"(inference_mode); % peak = share of the sgemm GFLOP/s measured in the same rounds",
        [Column("B", "B"), Column("T", "T"), Column("variant", "variant"), Column("reps", "reps"),
         Column("ms", "median ms", ms_fmt), Column("gflops", "GFLOP/s", "{:.1f}"), Column("peak_share", "% peak", "{:.0%}"),
         Column("ratio", f"vs {BASELINE}", ratio_fmt), Column("load_s", "session load s", "{:.3f}"),
         Column("error", "error")],
    )
    runs, missing = variants(ctx)
    a, b = torch.randn(MM, MM), torch.randn(MM, MM)
    c = torch.empty(MM, MM)

    def mm() -> None:
        torch.mm(a, b, out=c)

    shapes = [(1, 128), (16, 128)] + ([] if ctx.quick else [(1, 512), (16, 512)])
    budget = 6.0 if ctx.quick else 45.0  # seconds of timed runs per shape
    for batch, seq in shapes:
        x = np.random.default_rng(batch * 1000 + seq).standard_normal((batch, seq, params["d"])).astype(np.float32)
        fns = {k: (lambda f=f, x=x: f(x)) for k, f in runs.items()}
        fns[PEAK] = mm  # the peak again, in the same rounds: the load of this shared machine changes
        for f in fns.values():  # first call: allocations, kernel choice
            f()
        warm = {k: clock(f) for k, f in fns.items()}
        reps = max(3, min(30, int(budget / max(sum(warm.values()), 1e-6))))
        seconds = interleave(fns, reps)
        flops = encoder_flops(params, batch, seq)
        ref = seconds.get(BASELINE)
        mm_s = seconds.pop(PEAK)
        shape_peak = MM_FLOPS / median(mm_s) / 1e9
        table.add(B=batch, T=seq, variant=PEAK, reps=reps, ms=median(mm_s) * 1e3, gflops=shape_peak, peak_share=1.0,
                  samples_ms=[s * 1e3 for s in mm_s])
        for name, xs in seconds.items():
            med = median(xs)
            table.add(B=batch, T=seq, variant=name, reps=reps, ms=med * 1e3, gflops=flops / med / 1e9,
                      peak_share=flops / med / 1e9 / shape_peak, ratio=median(paired_ratios(xs, ref)) if ref else None,
                      load_s=ctx.extra.get("session_load_s", {}).get(name),
                      samples_ms=[s * 1e3 for s in xs], flops=flops)
        for name, why in missing.items():
            table.add(B=batch, T=seq, variant=name, error=why)
    fused = {g.producer: g.info.get("fused") for g in ws.all_graphs("encoder4") if g.info.get("fused")}
    table.notes += [
        f"FLOPs per forward = depth * (8BTd^2 + 4BT^2d + 4BTd*ff), d={params['d']}, ff={params['ff']}, depth={params['depth']}",
        "+ortopt = onnxruntime.transformers.optimizer.optimize_model(model_type='bert', num_heads=8, hidden_size=256)",
        f"vs {BASELINE} = median over rounds of (variant / {BASELINE}) within the round; variants run round-robin, "
        "order reversed every other round; ORT pools do not spin (session.intra_op.allow_spinning=0)",
        "fused by the optimizer: " + "; ".join(f"{k}: {v}" for k, v in fused.items()),
        "eager nn.TransformerEncoder holds flashc's weights (q/k/v fused into in_proj); in inference mode torch "
        "takes its fused fast path",
    ]
    return table
