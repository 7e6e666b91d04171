"""The benchmarked models and their ONNX graphs, built once per run and shared by the sections.

A graph is named by (model, producer): `flashc` (opset 23, the default), `flashc-o17` (the
decomposed attention of opsets 17-22), `torchscript` (torch.onnx.export(dynamo=False), opset 17)
and `dynamo` (torch.onnx.export(dynamo=True)); `+ortopt` marks a graph after onnxruntime's
transformers optimizer. The exporters export `spec.to_torch(seed=0)`, which holds the same
numbers as `spec.to_onnx(seed=0)`, so every graph of a model computes the same function.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import flashc
from bench.common import SPECS

PRODUCERS = ("flashc", "flashc-o17", "torchscript", "dynamo")
ORTOPT = "+ortopt"


@dataclass(frozen=True)
class ModelDef:
    name: str
    spec: str
    overrides: dict[str, Any]
    producers: tuple[str, ...]
    ortopt: bool  # run onnxruntime's transformers optimizer (model_type bert) on its graphs

    @property
    def path(self) -> Path:
        return SPECS / self.spec

    @property
    def label(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"{self.name}({extra})" if extra else self.name


def model_defs(quick: bool) -> dict[str, ModelDef]:
    gpt2 = {"depth": 1, "vocab": 4096, "ctx": 256} if quick else {}
    return {
        "encoder4": ModelDef("encoder4", "encoder4.flash", {}, PRODUCERS, True),
        "gpt2": ModelDef("gpt2", "gpt2.flash", gpt2, ("flashc", "torchscript", "dynamo"), False),
    }


@dataclass
class Graph:
    model: str
    producer: str
    path: Path | None
    seconds: float | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


@contextlib.contextmanager
def quiet():
    """Exporters print progress and warn a lot; keep the tables readable."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


class Workspace:
    """Specs, torch modules and ONNX files of one run, in one temporary folder."""

    def __init__(self, folder: Path, quick: bool, threads: int):
        self.folder = folder
        self.quick = quick
        self.threads = threads
        self.models = model_defs(quick)
        self._specs: dict[str, flashc.Spec] = {}
        self._torch: dict[str, Any] = {}
        self.graphs: dict[tuple[str, str], Graph] = {}

    # --- models ----------------------------------------------------------------------------------
    def spec(self, model: str) -> flashc.Spec:
        if model not in self._specs:
            m = self.models[model]
            self._specs[model] = flashc.load(m.path, **m.overrides)
        return self._specs[model]

    def torch_model(self, model: str) -> Any:
        if model not in self._torch:
            self._torch[model] = self.spec(model).to_torch(seed=0).eval()
        return self._torch[model]

    def example(self, model: str, batch: int = 2, seq: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs for every input of the spec, B = batch and T = seq."""
        spec = self.spec(model)
        rng = np.random.default_rng(seed)
        feeds = {}
        for v in spec.graph.inputs:
            shape = tuple(batch if str(d) == "B" else seq if str(d) == "T" else int(d) for d in v.type.shape)
            if v.type.dtype == "float32":
                feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
            else:
                feeds[v.name] = rng.integers(0, spec.graph.params["vocab"], shape).astype(np.int64)
        return feeds

    def eager(self, model: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        module = self.torch_model(model)  # built outside inference mode: its weights must stay normal tensors
        with torch.inference_mode():
            out = module(*(torch.from_numpy(feeds[v.name]) for v in self.spec(model).graph.inputs))
        return out.numpy()

    # --- graphs ----------------------------------------------------------------------------------
    def path(self, model: str, producer: str) -> Path:
        return self.folder / f"{model}.{producer.replace('+', '_')}.onnx"

    def export(self, model: str, producer: str, path: Path) -> None:
        """Write one graph; raises what the producer raises."""
        if producer == "flashc":
            flashc.load(self.models[model].path, **self.models[model].overrides).to_onnx(path)
        elif producer == "flashc-o17":
            flashc.load(self.models[model].path, **self.models[model].overrides).to_onnx(path, opset=17)
        else:
            torch_export(self.torch_model(model), self.spec(model), self.example(model), path, producer)

    def record(self, graph: Graph) -> Graph:
        self.graphs[(graph.model, graph.producer)] = graph
        return graph

    def graph(self, model: str, producer: str) -> Graph:
        """The graph, built now if no section has built it yet."""
        key = (model, producer)
        if key in self.graphs:
            return self.graphs[key]
        if producer.endswith(ORTOPT):
            return self.record(self._ortopt(model, producer))
        path = self.path(model, producer)
        start = time.perf_counter()
        try:
            with quiet():
                self.export(model, producer, path)
        except Exception as exc:  # an exporter failing is a result, not a crash
            return self.record(Graph(model, producer, None, error=short_error(exc)))
        return self.record(Graph(model, producer, path, time.perf_counter() - start))

    def all_graphs(self, model: str) -> list[Graph]:
        m = self.models[model]
        names = list(m.producers) + ([p + ORTOPT for p in m.producers] if m.ortopt else [])
        return [self.graph(model, p) for p in names]

    def _ortopt(self, model: str, producer: str) -> Graph:
        base = self.graph(model, producer[: -len(ORTOPT)])
        if base.path is None:
            return Graph(model, producer, None, error=f"no base graph ({base.error})")
        spec = self.spec(model)
        path = self.path(model, producer)
        start = time.perf_counter()
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            with quiet(), contextlib.redirect_stderr(io.StringIO()):
                logging.getLogger("onnxruntime").setLevel(logging.ERROR)
                opt = optimize_model(str(base.path), model_type="bert", num_heads=spec.graph.params["heads"],
                                     hidden_size=spec.graph.params["d"])
                opt.save_model_to_file(str(path))
            fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        except Exception as exc:
            return Graph(model, producer, None, error=short_error(exc))
        return Graph(model, producer, path, time.perf_counter() - start, info={"fused": fused})


def torch_export(module: Any, spec: flashc.Spec, example: dict[str, np.ndarray], path: Path, producer: str) -> None:
    """torch.onnx.export of a flashc-built module with dynamic B and T."""
    import torch

    names = [v.name for v in spec.graph.inputs]
    outs = [n for n, _ in spec.graph.outputs]
    args = tuple(torch.from_numpy(example[n]) for n in names)
    if producer == "torchscript":
        axes = {n: {0: "B", 1: "T"} for n in names + outs}
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=names,
                          output_names=outs, dynamic_axes=axes)
    elif producer == "dynamo":
        B, T = torch.export.Dim("B"), torch.export.Dim("T")
        torch.onnx.export(module, args, str(path), dynamo=True, input_names=names, output_names=outs,
                          dynamic_shapes=tuple({0: B, 1: T} for _ in names), external_data=False, verbose=False)
    else:
        raise ValueError(producer)
