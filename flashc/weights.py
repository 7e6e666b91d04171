"""Weights as numpy arrays keyed by state-dict path: seeded init, safetensors I/O.

Both backends take their weights from here, so `to_torch(seed=0)` and
`to_onnx(seed=0)` hold identical numbers. Checkpoints are read with
safetensors only: loading weights never executes code.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flashc.diagnostics import Span, error
from flashc.ir.graph import Graph

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int64": np.int64,
                "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


def init_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh weights drawn in a fixed order from one seeded generator."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
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
        out[path] = np.array(arr, dtype=dtype, order="C")  # keeps 0-d shapes, unlike ascontiguousarray
    return out


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
    problems = []
    out = {}
    for path, w in graph.weights.items():
        if path not in arrays:
            problems.append(f"`{path}` is missing")
            continue
        arr = arrays[path]
        if tuple(arr.shape) != w.spec.shape:
            problems.append(f"`{path}` has shape {list(arr.shape)}, the spec needs {list(w.spec.shape)}")
            continue
        out[path] = np.array(arr, dtype=NUMPY_DTYPES[w.spec.dtype], order="C")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise error(Span.unknown(origin), f"{origin} do not fit model {graph.name}: {shown}")
    return out


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise error(Span.unknown(str(path)), f"no such weights file: {path}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(Span.unknown(str(path)), f"cannot read safetensors weights: {exc}") from None


def save_safetensors(weights: Mapping[str, Any], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save

    data = save({k: np.array(v, order="C") for k, v in to_numpy(weights).items()}, metadata=metadata)
    write_atomic(path, data)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: no half-written outputs."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise error(Span.unknown(str(path)), f"output directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
