"""Reading .npy / .npz files without trusting them.

``np.load`` believes a file's header: a 200-byte `.npy` that claims 10^12 rows
asks for petabytes before noticing the data is not there, a truncated `.npz`
raises ``zipfile.BadZipFile``, and object arrays would need unpickling. Here
each header is read first and its size checked against the bytes the file
really holds; object dtypes are refused before any data is touched (nothing is
ever unpickled); every failure is a :class:`FlashError` naming the file (and
the array, inside an `.npz`).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from flashc.diagnostics import Span, error

NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
KIND_NAMES = {"c": "complex numbers", "U": "strings", "S": "byte strings", "V": "structured records",
              "O": "Python objects", "M": "dates", "m": "time spans"}


def load_arrays(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """One array from a `.npy`, or the named arrays of a `.npz` (chosen by content, not by suffix)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise error(Span.nowhere(str(path)), f"cannot read: {exc.strerror or exc}") from None
    if magic.startswith(b"PK"):
        return load_npz(path)
    if magic == b"\x93NUMPY":
        return load_npy(path)
    what = "the file is empty" if not magic else "not a .npy or .npz file (no NumPy or zip signature)"
    raise error(Span.nowhere(str(path)), what, "save arrays with numpy.save or numpy.savez")


def load_npy(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _read(fh, path.stat().st_size, str(path))
    except OSError as exc:
        raise error(Span.nowhere(str(path)), f"cannot read: {exc.strerror or exc}") from None


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                where = f"{path} (array `{key}`)"
                try:
                    with zf.open(info) as fh:
                        out[key] = _read(fh, info.file_size, where)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                    raise error(Span.nowhere(where), f"the array is damaged: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise error(Span.nowhere(str(path)), f"not a readable .npz file (truncated or corrupt?): {exc}") from None
    if not out:
        raise error(Span.nowhere(str(path)), "the .npz file holds no arrays")
    return out


def _read(fh: IO[bytes], size: int, where: str) -> np.ndarray:
    """One array from an open `.npy` stream of ``size`` bytes, its header checked before its data."""
    try:
        version = npy_format.read_magic(fh)
        reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    except (ValueError, EOFError, SyntaxError) as exc:
        raise error(Span.nowhere(where), f"not a valid .npy header: {exc}") from None
    if dtype.hasobject:
        raise error(Span.nowhere(where), f"holds Python objects (dtype {dtype}); flashc never unpickles data",
                    "save numeric arrays")
    count = int(np.prod(shape, dtype=object))
    expected = count * dtype.itemsize
    available = size - fh.tell()
    if expected != available:
        raise error(Span.nowhere(where), f"the header promises shape {list(shape)} of {dtype} ({expected:,} bytes) "
                    f"but the file holds {available:,} bytes of data", "the file is truncated or corrupt")
    arr = np.empty(count, dtype=dtype)
    view, filled = memoryview(arr.view(np.uint8)), 0
    while filled < expected:
        got = fh.readinto(view[filled:])
        if not got:
            raise error(Span.nowhere(where), f"the data ends after {filled:,} of {expected:,} bytes")
        filled += got
    if fh.read(1):  # reading to the end also makes a zip member check its CRC
        raise error(Span.nowhere(where), "the file holds more data than its header describes")
    return arr.reshape(shape, order="F" if fortran else "C")


def check_numeric(arr: np.ndarray, where: str) -> None:
    """Refuse arrays that are not plain numbers or booleans, naming what they hold."""
    if arr.dtype.kind not in NUMERIC_KINDS:
        what = KIND_NAMES.get(arr.dtype.kind, f"dtype {arr.dtype}")
        extra = "; their imaginary parts would be lost" if arr.dtype.kind == "c" else ""
        raise error(Span.nowhere(where), f"holds {what} (dtype {arr.dtype}), not numbers{extra}",
                    "save a float, integer or bool array")
