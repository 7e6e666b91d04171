"""The Python face of flashc: load a spec, lower it, get weights in and out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flashc.build import build, read_source
from flashc.check import render_table, summary, to_json
from flashc.ir.graph import Graph
from flashc.weights import init_weights

Weights = dict[str, Any] | str | Path | None


@dataclass(frozen=True)
class Spec:
    """A parsed and checked spec: the IR plus where it came from."""

    graph: Graph
    path: str

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def parameter_count(self) -> int:
        return self.graph.parameter_count

    @property
    def inputs(self) -> dict[str, str]:
        return {v.name: str(v.type) for v in self.graph.inputs}

    @property
    def outputs(self) -> dict[str, str]:
        return {n: str(v.type) for n, v in self.graph.outputs}

    @property
    def train(self) -> Any:
        return self.graph.train

    def summary(self) -> list:
        return summary(self.graph)

    def table(self, expand: bool = False) -> str:
        """The check report; a repeat's blocks after the first are folded unless ``expand``."""
        return render_table(self.graph, expand)

    def to_json(self) -> dict[str, Any]:
        return to_json(self.graph)

    def init_weights(self, seed: int = 0) -> dict[str, Any]:
        """Seeded weights as numpy arrays, keyed by state-dict path."""
        return init_weights(self.graph, seed)

    def save_weights(self, path: str | Path, weights: Any = None, seed: int = 0) -> Path:
        """Write ``weights`` (a state dict, e.g. a trained module's; numpy arrays; a checkpoint path,
        read as :meth:`open_weights` does) or the seeded initial ones to a .safetensors file, tied
        tensors once. `--weights`, ``to_torch(weights=path)`` and ``to_onnx(weights=path)`` read it back."""
        from flashc.saving import save_weights

        if isinstance(weights, (str, Path)):
            weights = self.open_weights(weights, seed=seed)
        return save_weights(self.graph, path, weights, seed)

    def to_torch(self, weights: Weights = None, seed: int = 0, kv_cache: bool = False, **reading: Any) -> Any:
        """A torch.nn.Module; weights from a dict/state_dict, or a checkpoint path (see :meth:`open_weights`).

        ``kv_cache``: the module takes past keys/values after its inputs and returns the present
        ones after its outputs, as the ONNX graph of ``to_onnx(kv_cache=True)`` does."""
        from flashc.backends.torch import to_torch
        from flashc.loader import materialize

        if isinstance(weights, (str, Path)):
            weights = materialize(self.open_weights(weights, seed=seed, **reading))
        encoder, graph = self.lowered_graphs(kv_cache)
        if encoder is None:
            return to_torch(graph, weights, seed)
        full = weights if weights is not None else self.init_weights(seed)
        return tuple(to_torch(g, {k: v for k, v in full.items() if k in g.weights}) for g in (encoder, graph))

    def lowered_graph(self, kv_cache: bool = False) -> Graph:
        """The graph the backends lower: the spec's, or with ``kv_cache`` its cached form (flashc/kvcache.py;
        an encoder-decoder's cached decoder)."""
        return self.lowered_graphs(kv_cache)[1]

    def lowered_graphs(self, kv_cache: bool = False) -> tuple[Graph | None, Graph]:
        """(encoder, main graph): with ``kv_cache``, an encoder-decoder is split into its encoder (which also
        returns the cross-attention keys/values) and its cached decoder; otherwise the encoder is None."""
        if not kv_cache:
            return None, self.graph
        from flashc.kvcache import cached_graphs

        return cached_graphs(self.graph)

    def generate(self, prompt_ids: Any, max_new_tokens: int, weights: Weights = None, seed: int = 0,
                 **options: Any) -> Any:
        """Generate tokens after ``prompt_ids`` (a list of ids, or one list per sequence) with a KV cache in
        onnxruntime: compiles the cached graph in memory, then runs flashc.generate.generate (``options``:
        greedy, temperature, top_k, top_p, sample_seed, stop_ids, threads, dtype, quantize, on_token)."""
        import tempfile

        from flashc.generate import Generator

        lowering = {k: options.pop(k) for k in ("dtype", "quantize", "opset") if k in options}
        with tempfile.TemporaryDirectory() as tmp:
            path = self.to_onnx(Path(tmp) / f"{self.name}.onnx", weights, seed, kv_cache=True, **lowering)
            generator = Generator(path, threads=options.pop("threads", None))
        return generator.generate(prompt_ids, max_new_tokens, **options)

    def open_weights(self, path: str | Path, *, map: str | Path | None = None, allow_missing: bool = False,
                     allow_unexpected: bool = False, seed: int = 0) -> Any:
        """A checkpoint as it is (.safetensors file, Hugging Face folder, sharded or not, a torch
        pickle) under this spec's weight names, read through ``map`` or the best-fitting
        ``NAME.*.map`` beside the spec; dtypes converted; tensors read when used. Missing,
        unexpected and misshapen keys are one error unless allowed (missing ones keep the
        seeded initial values)."""
        from flashc.loader import open_weights

        return open_weights(self.graph, path, self.path, map_path=map, allow_missing=allow_missing,
                            allow_unexpected=allow_unexpected, seed=seed)

    def torch_source(self) -> str:
        from flashc.backends.torch import torch_source

        return torch_source(self.graph)

    def sibling(self, name: str) -> Spec:
        """Another model of the same file (a frozen feature network for `perceptual`), built the same way."""
        return load_model(self.path, name)

    def fit(self, data: Any, out: str | Path | None = None, epochs: int | None = None, resume: bool = False,
            device: str = "cpu", quiet: bool = False, shard: bool = False, **controls: Any) -> Any:
        """Train as the spec's `train` section says; data is a file, a built-in name or a dict of arrays.
        ``controls`` (accumulate, precision, compile) override the section's; inside a torchrun worker
        the processes train together (DDP, or FSDP with ``shard``)."""
        from flashc.train.loop import fit

        return fit(self, data, out, epochs=epochs, resume=resume, device=device, quiet=quiet, shard=shard, **controls)

    def to_onnx(self, path: str | Path | None = None, weights: Weights = None, seed: int = 0,
                opset: int | None = None, kv_cache: bool = False, dtype: str = "float32",
                quantize: str | None = None, **reading: Any) -> Any:
        """An in-memory onnx.ModelProto; with ``path``, the model is streamed to that file one
        weight at a time instead (large models never sit in memory) and the path is returned.
        A checkpoint path is read as :meth:`open_weights` says (``reading``: its options).

        ``kv_cache``: past keys/values in, present ones out (flashc/kvcache.py); an encoder-decoder gives
        (encoder, decoder) models, or writes the encoder beside ``path`` as NAME.encoder.onnx. ``dtype =
        "float16"``: half-precision weights and compute, float32 inputs and outputs; ``quantize =
        "int8"``: int8 weights of the matrix products, decision layers kept in float32
        (backends/onnx_post.py)."""
        from flashc.backends.onnx import DEFAULT_OPSET, to_onnx_model, write_onnx
        from flashc.backends.onnx_post import post_process

        if dtype not in ("float32", "float16") or quantize not in (None, "int8"):
            raise ValueError(f"dtype must be float32 or float16 and quantize None or int8, got {dtype!r}, {quantize!r}")
        if isinstance(weights, (str, Path)):
            weights = self.open_weights(weights, seed=seed, **reading)
        encoder, graph = self.lowered_graphs(kv_cache)
        if encoder is not None:  # an encoder-decoder: (encoder, decoder), or the decoder's path with m.encoder.onnx beside
            from flashc.kvcache import encoder_path
            from flashc.loader import materialize

            # the seeded values of the whole spec: each part's own draw would differ
            weights = self.init_weights(seed) if weights is None else weights
            if not isinstance(weights, dict):
                weights = materialize(weights)
            if path is None:
                return tuple(to_onnx_model(g, weights, seed, opset or DEFAULT_OPSET) for g in (encoder, graph))
            for g, where in ((encoder, encoder_path(path)), (graph, Path(path))):
                write_onnx(where, g, weights, seed, opset or DEFAULT_OPSET)
                post_process(where, g, dtype, quantize)
            return Path(path)
        if path is None and dtype == "float32" and quantize is None:
            return to_onnx_model(graph, weights, seed, opset or DEFAULT_OPSET)
        if path is None:
            import tempfile

            import onnx

            with tempfile.TemporaryDirectory() as tmp:
                return onnx.load(str(self.to_onnx(Path(tmp) / "model.onnx", weights, seed, opset, kv_cache, dtype,
                                                  quantize)))
        write_onnx(path, graph, weights, seed, opset or DEFAULT_OPSET)
        post_process(Path(path), graph, dtype, quantize)
        return Path(path)


def load(path: str | Path, /, *, include: tuple[str | Path, ...] = (), **overrides: Any) -> Spec:
    """Parse, build and check a .flash file; keyword arguments override its parameters.

    The first model of the file is built; :func:`load_model` picks another one. `import`
    reads `.flash` files inside the spec's folder tree and the ``include`` folders only.
    """
    return load_model(path, None, overrides, include)


def load_model(path: str | Path, name: str | None, overrides: dict[str, Any] | None = None,
               include: tuple[str | Path, ...] = ()) -> Spec:
    """Like :func:`load`, choosing the model by name (None: the first) and taking overrides as a dict."""
    text = read_source(path)
    return Spec(build(text, str(path), overrides or {}, model=name, base=Path(path).parent, include=tuple(include)),
                str(path))


def loads(text: str, /, file: str = "<string>", *, include: tuple[str | Path, ...] = (), **overrides: Any) -> Spec:
    """Like :func:`load`, for spec text held in memory (imports resolve from, and stay inside, the cwd)."""
    return Spec(build(text, file, overrides, base=Path("."), include=tuple(include)), file)
