"""Weights as numpy arrays keyed by state-dict path: seeded init, safetensors I/O.

Both backends take their weights from here, so `to_torch(seed=0)` and
`to_onnx(seed=0)` hold identical numbers. Checkpoints are read with
safetensors only: loading weights never executes code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flashc.diagnostics import Span, error
from flashc.ir.graph import Graph

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int64": np.int64,
                "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


def init_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh weights drawn in a fixed order from one seeded generator."""
    return dict(iter_init(graph, seed))


def iter_init(graph: Graph, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """The seeded weights one at a time, in sorted path order: large models never hold them all."""
    rng = np.random.default_rng(seed)
    for path in sorted(graph.weights):
        spec = graph.weights[path].spec
        kind, *args = spec.init
        dtype = NUMPY_DTYPES[spec.dtype]
        if kind == "uniform":  # drawn in float32 directly: no float64 copy of large tables
            arr = rng.random(spec.shape, dtype=np.float32)
            arr *= np.float32(2 * args[0])
            arr -= np.float32(args[0])
        elif kind == "normal":
            arr = rng.standard_normal(spec.shape, dtype=np.float32)
            arr *= np.float32(args[0])
            if len(args) > 1:  # an embedding's padding row starts at zero, as in torch
                arr[args[1]] = 0
        elif kind == "ones":
            arr = np.ones(spec.shape)
        else:
            arr = np.zeros(spec.shape)
        yield path, np.array(arr, dtype=dtype, order="C", copy=arr.dtype != dtype)


class WeightSource:
    """Where an export reads weights from, one tensor at a time, checked up front."""

    def __init__(self, graph: Graph, weights: Mapping[str, Any] | str | Path | None, seed: int = 0):
        self.graph, self.weights, self.seed = graph, weights, seed
        if isinstance(weights, (str, Path)):
            self._check_file(Path(weights))
        elif weights is not None:
            self.weights = check_weights(graph, weights)

    def _check_file(self, path: Path) -> None:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="np") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except FileNotFoundError:
            raise error(Span.unknown(str(path)), f"no such weights file: {path}") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise error(Span.unknown(str(path)), f"cannot read safetensors weights: {exc}") from None
        _report(self.graph, shapes, str(path))

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """(path, array) in sorted path order."""
        if self.weights is None:
            yield from iter_init(self.graph, self.seed)
        elif isinstance(self.weights, (str, Path)):
            from safetensors import safe_open

            with safe_open(str(self.weights), framework="np") as f:
                for path in sorted(self.graph.weights):
                    dtype = NUMPY_DTYPES[self.graph.weights[path].spec.dtype]
                    yield path, np.array(f.get_tensor(path), dtype=dtype, order="C", copy=False)
        else:
            for path in sorted(self.graph.weights):
                yield path, self.weights[path]


def _report(graph: Graph, shapes: Mapping[str, tuple[int, ...]], origin: str) -> None:
    problems = []
    for path, w in graph.weights.items():
        if path not in shapes:
            problems.append(f"`{path}` is missing")
        elif tuple(shapes[path]) != w.spec.shape:
            problems.append(f"`{path}` has shape {list(shapes[path])}, the spec needs {list(w.spec.shape)}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise error(Span.unknown(origin), f"{origin} do not fit model {graph.name}: {shown}")


def to_numpy(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Accept numpy arrays or torch tensors (e.g. a state_dict) without importing torch."""
    out = {}
    for key, value in weights.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        out[key] = np.asarray(value)
    return out


def check_weights(graph: Graph, weights: Mapping[str, Any], origin: str = "weights") -> dict[str, np.ndarray]:
    """The graph's weights taken from ``weights``; missing or misshapen ones are errors."""
    arrays = to_numpy(weights)
    _report(graph, {k: v.shape for k, v in arrays.items()}, origin)
    return {p: np.array(arrays[p], dtype=NUMPY_DTYPES[w.spec.dtype], order="C", copy=False) for p, w in graph.weights.items()}


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise error(Span.unknown(str(path)), f"no such weights file: {path}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(Span.unknown(str(path)), f"cannot read safetensors weights: {exc}") from None


@contextlib.contextmanager
def atomic_files(path: Path, extra: Path | None = None) -> Iterator[tuple[Any, Any]]:
    """Open ``path`` (and ``extra``) as temporary files beside them; rename both only on success."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise error(Span.unknown(str(path)), f"output directory {directory} does not exist")
    temps: list[str] = []
    handles = []
    try:
        for target in (path, extra):
            if target is None:
                handles.append(None)
                continue
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
            temps.append(tmp)
            handles.append(os.fdopen(fd, "wb"))
        yield handles[0], handles[1]
        for h in handles:
            if h is not None:
                h.close()
        umask = os.umask(0)
        os.umask(umask)
        for tmp, target in zip(temps, [t for t in (path, extra) if t is not None]):
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
    except BaseException:
        for h in handles:
            if h is not None and not h.closed:
                h.close()
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: no half-written outputs."""
    with atomic_files(Path(path)) as (fh, _):
        fh.write(data)
