"""Training data: named arrays from .npz / .safetensors / .csv files or built-in sets.

Array names match the spec's inputs and targets. Everything is checked against
the spec before the first step, so a wrong shape is reported by name.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from flashc.diagnostics import Span, error
from flashc.ir.dims import is_static
from flashc.ir.graph import Graph
from flashc.ir.train import LossTerm
from flashc.ir.types import TensorType
from flashc.npyfiles import load_npz
from flashc.train.builtin import BUILTIN, builtin
from flashc.train.dataset import Dataset
from flashc.weights import NUMPY_DTYPES


def load_data(source: str | Path | Dataset | dict, graph: Graph) -> Dataset:
    """A dataset from a file path, a built-in name (`digits`), a dict of arrays, or a Dataset.

    Everything is checked before training: names, shapes and dtypes against the spec,
    every float cell finite, class ids inside the logits' classes, 0/1 targets in [0, 1].
    """
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
        return replace(builtin(source, graph), origin=source)
    path = Path(source)
    if not path.is_file():
        raise error(Span.nowhere(source), f"no such data file or built-in dataset: {source}",
                    f"built-in datasets: {', '.join(BUILTIN)}")
    if path.stat().st_size == 0:
        raise error(Span.nowhere(source), "the data file is empty")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return Dataset(load_npz(path), origin=source)
    if suffix == ".safetensors":
        from flashc.weights import load_safetensors

        return Dataset(load_safetensors(path), origin=source)
    if suffix == ".csv":
        return _from_csv(path, graph)
    raise error(Span.nowhere(source), f"unsupported data file {path.name}", "use .npz, .safetensors or .csv")


def _decode(path: Path) -> str:
    """The CSV's text: UTF-8, a leading byte-order mark dropped. Other encodings are refused (not
    guessed): a latin-1 file reads wrongly without error under most guesses, so the user re-saves it."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise error(Span.nowhere(str(path)), f"line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                    "save the CSV as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def _from_csv(path: Path, graph: Graph) -> Dataset:
    """Columns named like an input/target fill it; `name_0 ... name_k` columns stack into one array."""
    where = str(path)
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    header: list[str] | None = None
    cells: list[list[float]] = []
    lines: list[int] = []
    for row in reader:
        if not any(c.strip() for c in row):
            continue  # blank lines
        if header is None:
            header = [c.strip() for c in row]
            continue
        if len(row) != len(header):
            raise error(Span.nowhere(where), f"line {reader.line_num} has {len(row)} cells, the header has {len(header)}")
        values = []
        for column, text in zip(header, row):
            try:
                value = float(text)
            except ValueError:
                raise error(Span.nowhere(where), f"line {reader.line_num}, column `{column}`: {text.strip()!r} is not "
                            "a number") from None
            if not math.isfinite(value):
                raise error(Span.nowhere(where), f"line {reader.line_num}, column `{column}`: {text.strip()} is not a "
                            "finite number", "training data must be finite: drop or fill the row") from None
            values.append(value)
        cells.append(values)
        lines.append(reader.line_num)
    if header is None:
        raise error(Span.nowhere(where), "the CSV file is empty", "it needs a header row and at least one data row")
    if not cells:
        raise error(Span.nowhere(where), "the CSV file has a header but no data rows")
    table = np.array(cells, dtype=np.float64)
    noise = set(graph.train.noise) if graph.train else set()
    wanted = [v.name for v in graph.inputs if v.name not in noise] + [n for n, _ in (graph.train.targets if graph.train else ())]
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
    return Dataset(arrays, origin=where, lines=np.array(lines))


def conform(data: Dataset, graph: Graph) -> Dataset:
    """Check every input/target array against the spec; cast dtypes that convert safely."""
    noise = set(graph.train.noise) if graph.train is not None else set()  # drawn by the loop, not read
    wanted: list[tuple[str, TensorType]] = [(v.name, v.type) for v in graph.inputs if v.name not in noise]
    if graph.train is not None:
        wanted += list(graph.train.targets)
    where = Span.nowhere(data.origin or "data")
    out: dict[str, np.ndarray] = {}
    n = None
    for name, t in wanted:
        if name not in data.arrays:
            raise error(where, f"the data has no array `{name}` (the spec needs {t})",
                        f"arrays in the data: {', '.join(data.arrays) or 'none'}")
        arr = np.asarray(data.arrays[name])
        shape_ok = arr.ndim == t.rank and all(
            not is_static(d) or arr.shape[i] == d for i, d in enumerate(t.shape)
        )
        if not shape_ok:
            raise error(where, f"data array `{name}` has shape {list(arr.shape)}, the spec expects {t}")
        if arr.dtype.kind in "fc":
            _finite(data, name, arr)
        kind_ok = (t.is_float and arr.dtype.kind in "biuf") or (
            t.dtype in ("int64", "int32") and (np.issubdtype(arr.dtype, np.integer) or _whole(arr))
        ) or (t.dtype == "bool" and arr.dtype in (np.bool_, np.int64, np.int32, np.uint8))
        if not kind_ok:
            raise error(where, f"data array `{name}` has dtype {arr.dtype}, the spec expects {t}")
        if n is not None and len(arr) != n:
            raise error(where, f"data array `{name}` has {len(arr)} rows, the others have {n}")
        n = len(arr)
        out[name] = arr.astype(NUMPY_DTYPES[t.dtype], copy=False)
    result = Dataset(out, data.groups, data.origin, data.lines)
    if graph.train is not None:
        _check_targets(result, graph)
    return result


def _finite(data: Dataset, name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        at = f" at index {list(index)}" if arr.ndim > 1 else ""
        raise error(Span.nowhere(data.origin or "data"), f"data array `{name}`, {data.row(index[0])}: "
                    f"{arr[index]}{at} is not a finite number ({int(bad.sum())} such cells in all)",
                    "training data must be finite: drop or fill those rows")


def _calls(term: LossTerm) -> list[LossTerm]:
    return ([term] if term.kind == "call" else []) + [c for child in term.children for c in _calls(child)]


def _check_targets(data: Dataset, graph: Graph) -> None:
    """Class ids inside [0, classes) of their logits; 0/1 targets in [0, 1]; naming the first bad row."""
    outputs = {n: v.type for n, v in graph.outputs}
    for call in _calls(graph.train.loss):
        if len(call.args) < 2 or call.args[1] not in data.arrays:
            continue
        logits, target = call.args[:2]
        values = data.arrays[target]
        if call.name in ("cross_entropy", "hinge") and logits in outputs and is_static(outputs[logits].shape[-1]):
            classes = outputs[logits].shape[-1]
            ok = (values >= 0) & (values < classes)
            if call.name == "cross_entropy":
                ok |= values == dict(call.options)["ignore_index"]
            words, hint = f"outside [0, {classes})", f"`{logits}` has {classes} classes: ids run from 0 to {classes - 1}"
        elif call.name in ("binary_cross_entropy", "dice"):
            ok = (values >= 0) & (values <= 1)
            words, hint = "outside [0, 1]", f"`{call.name}` targets are 0/1 labels or probabilities"
        else:
            continue
        if not ok.all():
            index = tuple(int(i) for i in np.argwhere(~ok)[0])
            at = f" at index {list(index)}" if values.ndim > 1 else ""
            raise error(Span.nowhere(data.origin or "data"), f"data array `{target}`, {data.row(index[0])}: "
                        f"{values[index]}{at} is {words} ({int((~ok).sum())} such values in all)", hint)


def _whole(arr: np.ndarray) -> bool:
    return np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.mod(arr, 1) == 0))
