"""Section `agreement`: every benchmarked ONNX graph against eager PyTorch (flashc's module,
seed 0, inference mode), max absolute difference, at a B and T none of the exports were traced with."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import handwritten as hw
from bench.common import Column, Table, sci_fmt
from bench.ort import session

TOLERANCE = 1e-3  # absolute
RELATIVE = 1e-6  # of max |ref|: GPT-2's tied N(0, 1) embeddings give logits in the hundreds
SHAPES = {"encoder4": (3, 37), "gpt2": (2, 23)}


def run(ctx: Any) -> Table:
    import torch

    ws = ctx.ws
    table = Table(
        f"agreement: max |ONNX graph - eager PyTorch| (ok: below {TOLERANCE:g}, or below {RELATIVE:g} of max |ref|)",
        [Column("model", "model"), Column("graph", "graph"), Column("shape", "input"),
         Column("max_abs_diff", "max abs diff", sci_fmt), Column("ref_scale", "max |ref|", "{:.3g}"),
         Column("rel_diff", "diff / max |ref|", sci_fmt),
         Column("ok", "ok"), Column("error", "error")],
    )
    for model, (batch, seq) in SHAPES.items():
        feeds = ws.example(model, batch, seq, seed=7)
        want = ws.eager(model, feeds)
        shape = "x".join(str(s) for s in next(iter(feeds.values())).shape)
        label = ws.models[model].label
        if model == "encoder4":
            hand = getattr(ctx, "hand_encoder", None)
            if hand is None:
                p = ws.spec(model).graph.params
                hand = hw.encoder(p["d"], p["heads"], p["ff"], p["depth"], p["p"]).eval()
                hw.from_flashc("encoder", hand, ws.torch_model(model).state_dict())
            with torch.inference_mode():
                got = hand(torch.from_numpy(feeds["x"])).numpy()
            _row(table, label, "eager nn.TransformerEncoder", shape, got, want)
        for graph in ws.all_graphs(model):
            if graph.path is None:
                table.add(model=label, graph=graph.producer, shape=shape, error=graph.error)
                continue
            try:
                got = session(graph.path, ctx.threads).run(None, feeds)[0]
            except Exception as exc:
                table.add(model=label, graph=graph.producer, shape=shape, ok="NO",
                          error=str(exc).strip().splitlines()[0][:160])
                continue
            _row(table, label, graph.producer, shape, got, want)
    table.notes.append("reference: spec.to_torch(seed=0) under torch.inference_mode; every graph holds the same weights")
    return table


def _row(table: Table, model: str, graph: str, shape: str, got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape:
        table.add(model=model, graph=graph, shape=shape, ok="NO", error=f"shape {got.shape} != {want.shape}")
        return
    diff = float(np.abs(got.astype(np.float64) - want).max())
    scale = float(np.abs(want).max())
    rel = diff / scale if scale else diff
    table.add(model=model, graph=graph, shape=shape, max_abs_diff=diff, ref_scale=scale, rel_diff=rel,
              ok="yes" if diff < TOLERANCE or rel < RELATIVE else "NO")
