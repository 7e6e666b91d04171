"""Weights as numpy arrays keyed by state-dict path: seeded init, safetensors I/O.

Both backends take their weights from here, so `to_torch(seed=0)` and
`to_onnx(seed=0)` hold identical numbers. Checkpoints are read with
safetensors only: loading weights never executes code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
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
            low, high = (-args[0], args[0]) if len(args) == 1 else args  # ("uniform", bound) is [-bound, bound]
            arr = rng.random(spec.shape, dtype=np.float32)
            arr *= np.float32(high - low)
            arr += np.float32(low)
        elif kind == "normal":
            arr = rng.standard_normal(spec.shape, dtype=np.float32)
            arr *= np.float32(args[0])
            if len(args) > 1:  # an embedding's padding row starts at zero, as in torch
                arr[args[1]] = 0
        elif kind == "ones":
            arr = np.ones(spec.shape)
        elif kind == "constant":
            arr = np.full(spec.shape, args[0])
        else:
            arr = np.zeros(spec.shape)
        yield path, np.array(arr, dtype=dtype, order="C", copy=arr.dtype != dtype)


class CheckedWeights(Mapping[str, np.ndarray]):
    """Weights already checked against a graph, read lazily by path (a checkpoint seen through a map)."""


class WeightSource:
    """Where an export reads weights from, one tensor at a time, checked up front."""

    def __init__(self, graph: Graph, weights: Mapping[str, Any] | str | Path | None, seed: int = 0):
        self.graph, self.weights, self.seed = graph, weights, seed
        if isinstance(weights, (str, Path)):
            self._check_file(Path(weights))
        elif weights is not None and not isinstance(weights, CheckedWeights):  # a checkpoint streams as it is
            self.weights = check_weights(graph, weights)

    def _check_file(self, path: Path) -> None:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="np") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
                self.keys = resolve_keys(self.graph, shapes, f.get_tensor, str(path))
        except FileNotFoundError:
            raise error(Span.nowhere(str(path)), f"no such weights file: {path}") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise error(Span.nowhere(str(path)), f"cannot read safetensors weights: {exc}") from None

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """(path, array) in sorted path order."""
        if self.weights is None:
            yield from iter_init(self.graph, self.seed)
        elif isinstance(self.weights, (str, Path)):
            from safetensors import safe_open

            with safe_open(str(self.weights), framework="np") as f:
                for path in sorted(self.graph.weights):
                    dtype = NUMPY_DTYPES[self.graph.weights[path].spec.dtype]
                    yield path, np.array(f.get_tensor(self.keys[path]), dtype=dtype, order="C", copy=False)
        else:
            for path in sorted(self.graph.weights):
                yield path, self.weights[path]


def tied_names(graph: Graph) -> dict[str, list[str]]:
    """Each weight path -> the other state-dict keys tied to it (a torch module lists them all).

    `linear(vocab, weight = wte.weight)` gives `{"wte.weight": ["linear.weight"]}`: a checkpoint may
    hold the tensor under either name (`safetensors.torch.save_model` keeps only one of them).
    """
    names: dict[str, list[str]] = {}
    for node in graph.walk():  # a scan step's layers too
        for local, target in node.weights:
            alias = f"{node.layer}.{local}"
            if node.layer is not None and target != alias and alias not in names.setdefault(target, []):
                names[target].append(alias)
    return names


def resolve_keys(graph: Graph, shapes: Mapping[str, tuple[int, ...]], read: Callable[[str], Any],
                 origin: str) -> dict[str, str]:
    """Each weight path -> the key that holds it in a checkpoint with these ``shapes``.

    A tied weight is found under any of its names; when several are present they must hold the
    same values (``read`` fetches one by key), since the model keeps one tensor. Missing or
    misshapen weights are reported together, naming the file.
    """
    keys, missing, misshapen = match_keys(graph, shapes, read, origin)
    problems = [f"`{path}` is missing" + (f" (nor under its tied name {_names(also)})" if also else "")
                for path, also in missing] + misshapen
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise error(Span.nowhere(origin), f"{origin} do not fit model {graph.name}: {shown}")
    return keys


def match_keys(graph: Graph, shapes: Mapping[str, tuple[int, ...]], read: Callable[[str], Any],
               origin: str) -> tuple[dict[str, str], list[tuple[str, list[str]]], list[str]]:
    """:func:`resolve_keys` without raising: the keys found, the missing paths (with their tied
    names) and the misshapen ones; disagreeing tied copies are still an error at once."""
    aliases = tied_names(graph)
    missing: list[tuple[str, list[str]]] = []
    misshapen: list[str] = []
    keys: dict[str, str] = {}
    for path, w in graph.weights.items():
        present = [k for k in (path, *aliases.get(path, ())) if k in shapes]
        if not present:
            missing.append((path, aliases.get(path, [])))
            continue
        key = present[0]
        for other in present[1:]:
            if not _same(shapes[key], shapes[other], read, key, other):
                raise error(Span.nowhere(origin), f"{origin} holds tied weights `{key}` and `{other}` with different "
                            "values; the model keeps one tensor for both",
                            f"keep one of them (the spec ties them: {_names([path, *aliases[path]])})")
        if tuple(shapes[key]) != w.spec.shape:
            tied = f" (tied to `{path}`)" if key != path else ""
            misshapen.append(f"`{key}`{tied} has shape {list(shapes[key])}, the spec needs {list(w.spec.shape)}")
            continue
        keys[path] = key
    return keys, missing, misshapen


def _names(keys: list[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _same(shape_a: tuple[int, ...], shape_b: tuple[int, ...], read: Callable[[str], Any], a: str, b: str) -> bool:
    if tuple(shape_a) != tuple(shape_b):
        return False
    x, y = _as_numpy(read(a)), _as_numpy(read(b))
    nan = x.dtype.kind in "fc" and y.dtype.kind in "fc"
    return bool(np.array_equal(x, y, equal_nan=nan))


def _as_numpy(value: Any) -> np.ndarray:
    """A numpy view of an array or a torch tensor (e.g. a state_dict entry) without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else np.shape(value)


def select_weights(graph: Graph, weights: Mapping[str, Any], origin: str = "weights") -> dict[str, Any]:
    """The graph's weights, keyed by their paths, taken from ``weights`` (tied names accepted).

    Values are passed through untouched (torch tensors stay tensors); missing or misshapen
    weights and disagreeing tied copies are errors.
    """
    keys = resolve_keys(graph, {k: _shape(v) for k, v in weights.items()}, weights.__getitem__, origin)
    return {path: weights[key] for path, key in keys.items()}


def to_numpy(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Accept numpy arrays or torch tensors (e.g. a state_dict) without importing torch."""
    return {key: _as_numpy(value) for key, value in weights.items()}


def check_weights(graph: Graph, weights: Mapping[str, Any], origin: str = "weights") -> dict[str, np.ndarray]:
    """The graph's weights as numpy arrays taken from ``weights`` (see :func:`select_weights`)."""
    arrays = select_weights(graph, to_numpy(weights), origin)
    return {p: np.array(arrays[p], dtype=NUMPY_DTYPES[w.spec.dtype], order="C", copy=False) for p, w in graph.weights.items()}


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise error(Span.nowhere(str(path)), f"no such weights file: {path}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(Span.nowhere(str(path)), f"cannot read safetensors weights: {exc}") from None


@contextlib.contextmanager
def atomic_files(path: Path, extra: Path | None = None) -> Iterator[tuple[Any, Any]]:
    """Open ``path`` (and ``extra``) as temporary files beside them; rename both only on success."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise error(Span.nowhere(str(path)), f"output directory {directory} does not exist")
    for target in (path, extra):
        if target is not None and target.is_dir():
            raise error(Span.nowhere(str(target)), "is a directory; name a file to write")
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
    except BaseException as exc:
        for h in handles:
            if h is not None and not h.closed:
                with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
                    h.close()
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and _writing(exc, directory, (path, extra)):
            raise write_error(path, exc) from None
        raise


def _writing(exc: OSError, directory: Path, targets: tuple[Path | None, ...]) -> bool:
    """Whether ``exc`` came from writing the outputs (not from reading an input inside the block)."""
    if exc.filename is None:
        return True  # a failed write() or flush() of an open file names no file
    name = Path(str(exc.filename))
    temporary = name.parent == directory and name.name.startswith(".") and name.name.endswith(".tmp")
    return temporary or any(t is not None and name == t for t in targets)


def write_error(path: Path, exc: OSError) -> Exception:
    """A failed write as the user should read it: the file, what went wrong, what stays intact."""
    hints = {errno.EFBIG: "a file-size limit (ulimit -f) is reached", errno.ENOSPC: "the disk is full",
             errno.EACCES: "no permission to write there", errno.EROFS: "the file system is read-only",
             errno.EDQUOT: "the disk quota is used up"}
    reason = hints.get(exc.errno or 0)
    return error(Span.nowhere(str(path)), f"cannot write: {exc.strerror or exc}",
                 (f"{reason}; " if reason else "") + "nothing was written and any earlier file is unchanged")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: no half-written outputs."""
    with atomic_files(Path(path)) as (fh, _):
        fh.write(data)
