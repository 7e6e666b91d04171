"""Training data: named arrays from .npz / .safetensors / .csv files or built-in sets.

Array names match the spec's inputs and targets. Everything is checked against
the spec before the first step, so a wrong shape is reported by name.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from flashc.diagnostics import Span, error
from flashc.ir.dims import is_static
from flashc.ir.graph import Graph
from flashc.ir.types import TensorType
from flashc.train.builtin import BUILTIN, builtin
from flashc.train.dataset import Dataset
from flashc.weights import NUMPY_DTYPES


def load_data(source: str | Path | Dataset | dict, graph: Graph) -> Dataset:
    """A dataset from a file path, a built-in name (`digits`), a dict of arrays, or a Dataset."""
    if isinstance(source, Dataset):
        data = source
    elif isinstance(source, dict):
        data = Dataset({k: np.asarray(v) for k, v in source.items()})
    else:
        data = _from_path(str(source), graph)
    return conform(data, graph)


def _from_path(source: str, graph: Graph) -> Dataset:
    name = source.split(":", 1)[0]
    if name in BUILTIN:
        return builtin(source, graph)
    path = Path(source)
    if not path.is_file():
        raise error(Span.nowhere(source), f"no such data file or built-in dataset: {source}",
                    f"built-in datasets: {', '.join(BUILTIN)}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return Dataset({k: z[k] for k in z.files})
    if suffix == ".safetensors":
        from flashc.weights import load_safetensors

        return Dataset(load_safetensors(path))
    if suffix == ".csv":
        return _from_csv(path, graph)
    raise error(Span.nowhere(source), f"unsupported data file {path.name}", "use .npz, .safetensors or .csv")


def _from_csv(path: Path, graph: Graph) -> Dataset:
    """Columns named like an input/target fill it; `name_0 ... name_k` columns stack into one array."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise error(Span.nowhere(str(path)), "the CSV file needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    try:
        table = np.array([[float(c) for c in r] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise error(Span.nowhere(str(path)), f"the CSV file has a non-numeric cell: {exc}") from None
    wanted = [v.name for v in graph.inputs] + [n for n, _ in (graph.train.targets if graph.train else ())]
    arrays: dict[str, np.ndarray] = {}
    for name in wanted:
        if name in header:
            arrays[name] = table[:, header.index(name)]
            continue
        cols = [i for i, h in enumerate(header) if h.rsplit("_", 1)[0] == name and h.rsplit("_", 1)[-1].isdigit()]
        if cols:
            arrays[name] = table[:, sorted(cols, key=lambda i: int(header[i].rsplit("_", 1)[1]))]
    missing = [n for n in wanted if n not in arrays]
    if len(missing) == 1 and missing[0] in {v.name for v in graph.inputs}:
        used = {h for h in header if h in arrays or h.rsplit("_", 1)[0] in arrays}
        rest = [i for i, h in enumerate(header) if h not in used]
        arrays[missing[0]] = table[:, rest]
    return Dataset(arrays)


def conform(data: Dataset, graph: Graph) -> Dataset:
    """Check every input/target array against the spec; cast dtypes that convert safely."""
    wanted: list[tuple[str, TensorType]] = [(v.name, v.type) for v in graph.inputs]
    if graph.train is not None:
        wanted += list(graph.train.targets)
    out: dict[str, np.ndarray] = {}
    n = None
    for name, t in wanted:
        if name not in data.arrays:
            raise error(Span.nowhere("data"), f"the data has no array `{name}` (the spec needs {t})",
                        f"arrays in the data: {', '.join(data.arrays) or 'none'}")
        arr = np.asarray(data.arrays[name])
        shape_ok = arr.ndim == t.rank and all(
            not is_static(d) or arr.shape[i] == d for i, d in enumerate(t.shape)
        )
        if not shape_ok:
            raise error(Span.nowhere("data"), f"data array `{name}` has shape {list(arr.shape)}, the spec expects {t}")
        kind_ok = (t.is_float and np.issubdtype(arr.dtype, np.number)) or (
            t.dtype in ("int64", "int32") and (np.issubdtype(arr.dtype, np.integer) or _whole(arr))
        ) or (t.dtype == "bool" and arr.dtype in (np.bool_, np.int64, np.int32, np.uint8))
        if not kind_ok:
            raise error(Span.nowhere("data"), f"data array `{name}` has dtype {arr.dtype}, the spec expects {t}")
        if n is not None and len(arr) != n:
            raise error(Span.nowhere("data"), f"data array `{name}` has {len(arr)} rows, the others have {n}")
        n = len(arr)
        out[name] = arr.astype(NUMPY_DTYPES[t.dtype], copy=False)
    return Dataset(out, data.groups)


def _whole(arr: np.ndarray) -> bool:
    return np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.mod(arr, 1) == 0))
