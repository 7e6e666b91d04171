"""Sections `compile` (spec text -> ONNX file) and `size` (nodes and initializer bytes per graph)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import onnx

from bench.common import Column, Table, flashc_cli, mb_fmt, median, ratio_fmt, run_child, s_fmt
from bench.graphs import Graph, quiet, short_error

TOOLS = ("flashc", "flashc-cli", "torchscript", "dynamo")


def _reps(ctx: Any, model: str) -> int:
    if model == "gpt2":
        return 1 if ctx.quick else 3
    return 2 if ctx.quick else 5


def run_compile(ctx: Any) -> Table:
    ws = ctx.ws
    table = Table(
        "compile: spec text -> ONNX file, seconds (flashc in-process, flashc CLI process, torch.onnx.export)",
        [Column("model", "model"), Column("tool", "tool"), Column("reps", "reps"), Column("first_s", "first s", s_fmt),
         Column("median_s", "median s", s_fmt), Column("ratio", "vs flashc", ratio_fmt),
         Column("peak_rss_mb", "peak RSS MB", mb_fmt), Column("error", "error")],
    )
    for model in ("encoder4", "gpt2"):
        m = ws.models[model]
        spec = ws.spec(model)
        start = time.perf_counter()
        ws.torch_model(model)
        build_torch = time.perf_counter() - start
        reps = _reps(ctx, model)
        samples: dict[str, list[float]] = {t: [] for t in TOOLS}
        errors: dict[str, str] = {}
        rss: dict[str, int] = {}
        sets = [a for k, v in m.overrides.items() for a in ("--set", f"{k}={v}")]
        for _ in range(reps):  # interleaved: one of each tool per repetition
            for tool in TOOLS:
                if tool in errors:
                    continue
                if tool == "flashc-cli":
                    out = ws.folder / f"{model}.cli.onnx"
                    out.unlink(missing_ok=True)
                    child = run_child(flashc_cli("compile", str(m.path), "--target", "onnx", "-o", str(out), *sets))
                    if child.returncode != 0:
                        errors[tool] = f"exit {child.returncode}: {child.stderr_tail.strip().splitlines()[-1:]}"
                        continue
                    samples[tool].append(child.seconds)
                    rss[tool] = max(rss.get(tool, 0), child.maxrss_bytes)
                    out.unlink(missing_ok=True)
                    continue
                path = ws.path(model, tool)
                path.unlink(missing_ok=True)  # every tool writes a new file: replacing one costs a filesystem flush
                try:
                    with quiet():
                        begin = time.perf_counter()
                        ws.export(model, tool, path)
                        samples[tool].append(time.perf_counter() - begin)
                except Exception as exc:
                    errors[tool] = short_error(exc)
                    ws.record(Graph(model, tool, None, error=errors[tool]))
                    continue
                ws.record(Graph(model, tool, path, samples[tool][-1]))
        ref = _median_after_first(samples["flashc"])
        for tool in TOOLS:
            xs = samples[tool]
            med = _median_after_first(xs) if xs else None
            table.add(model=m.label, tool=tool, reps=len(xs), first_s=xs[0] if xs else None, median_s=med,
                      ratio=med / ref if med and ref else None, peak_rss_mb=rss[tool] / 2**20 if tool in rss else None,
                      error=errors.get(tool), samples_s=xs, params=spec.parameter_count)
        table.notes.append(f"{m.label}: {spec.parameter_count:,} parameters; building the torch module for the "
                           f"exporters (spec.to_torch) took {build_torch:.2f} s, not counted in their times")
    table.notes += [
        "flashc = flashc.load(spec).to_onnx(path) in this process (to_onnx also reads the file back into the "
        "ModelProto it returns); flashc-cli = a whole `python -m flashc.cli compile --target onnx` process "
        "(interpreter start and imports included; it only writes)",
        "torchscript = torch.onnx.export(dynamo=False, opset_version=17); dynamo = torch.onnx.export(dynamo=True); both "
        "with dynamic B, T, timed around the export call only",
        "median s = median of the repetitions after the first (the first alone when there is one); tools interleaved",
    ]
    return table


def _median_after_first(xs: list[float]) -> float | None:
    if not xs:
        return None
    return median(xs[1:]) if len(xs) > 1 else xs[0]


def graph_stats(path: Any) -> dict[str, Any]:
    model = onnx.load(str(path))
    g = model.graph
    init_bytes = sum(_tensor_bytes(t) for t in g.initializer)
    const_bytes = sum(_tensor_bytes(a.t) for n in g.node if n.op_type == "Constant" for a in n.attribute if a.name == "value")
    ops = Counter(n.op_type for n in g.node)
    function_nodes = sum(len(f.node) for f in model.functions)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    return {"nodes": len(g.node), "function_nodes": function_nodes, "initializers": len(g.initializer),
            "initializer_bytes": init_bytes, "constant_bytes": const_bytes, "file_bytes": path.stat().st_size,
            "ops": dict(ops.most_common()), "opsets": opsets}


def _tensor_bytes(t: onnx.TensorProto) -> int:
    if t.raw_data:
        return len(t.raw_data)
    from onnx import numpy_helper

    return int(numpy_helper.to_array(t).nbytes)


def run_size(ctx: Any) -> Table:
    ws = ctx.ws
    table = Table(
        "size: ONNX graph nodes and initializer bytes per producer",
        [Column("model", "model"), Column("producer", "producer"), Column("opset", "opset"),
         Column("nodes", "nodes", "{:,}"), Column("nodes_ratio", "vs flashc", ratio_fmt),
         Column("initializers", "inits", "{:,}"), Column("initializer_mb", "init MB", "{:,.2f}"),
         Column("init_ratio", "vs flashc", ratio_fmt), Column("constant_kb", "Constant KB", "{:,.1f}"),
         Column("file_mb", "file MB", "{:,.2f}"), Column("top_ops", "top ops"), Column("error", "error")],
    )
    for model in ("encoder4", "gpt2"):
        m = ws.models[model]
        stats: dict[str, dict[str, Any]] = {}
        for graph in ws.all_graphs(model):
            if graph.path is None:
                table.add(model=m.label, producer=graph.producer, error=graph.error)
                continue
            s = stats[graph.producer] = graph_stats(graph.path)
            ref = stats.get("flashc")
            top = ", ".join(f"{k} {v}" for k, v in list(s["ops"].items())[:4])
            table.add(model=m.label, producer=graph.producer, opset=s["opsets"].get("ai.onnx"), nodes=s["nodes"],
                      nodes_ratio=s["nodes"] / ref["nodes"] if ref else None, initializers=s["initializers"],
                      initializer_mb=s["initializer_bytes"] / 2**20,
                      init_ratio=s["initializer_bytes"] / ref["initializer_bytes"] if ref else None,
                      constant_kb=s["constant_bytes"] / 1024, file_mb=s["file_bytes"] / 2**20, top_ops=top,
                      fused=graph.info.get("fused"), **{k: s[k] for k in ("ops", "opsets", "function_nodes",
                                                                         "initializer_bytes", "file_bytes")})
        weight_bytes = sum(_weight_bytes(w) for w in ws.spec(model).graph.weights.values())
        table.notes.append(f"{m.label}: the spec's weights are {weight_bytes / 2**20:,.2f} MB")
    table.notes += ["init MB = bytes of graph initializers; Constant KB = tensors held in Constant nodes",
                    "+ortopt = after onnxruntime.transformers.optimizer.optimize_model(model_type='bert')"]
    return table


def _weight_bytes(w: Any) -> int:
    import numpy as np

    from flashc.weights import NUMPY_DTYPES

    return int(np.prod(w.spec.shape, dtype=np.int64)) * np.dtype(NUMPY_DTYPES[w.spec.dtype]).itemsize
