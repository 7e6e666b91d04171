"""Checkpoints as they are: a .safetensors file, a Hugging Face folder, sharded or not.

The safetensors header is read here directly (8 bytes of length, a JSON table of dtype,
shape and byte range per tensor) and tensors are memory-mapped one at a time, so every
dtype in use is readable without torch: bfloat16 becomes float32 bit for bit (its 16
bits are the high half of a float32), float16/float64 are cast. Nothing is executed;
only `.pt`/`.pth`/`.bin` pickles go through torch's weights-only loader.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flashc.diagnostics import Span, error
from flashc.weights import atomic_files

# safetensors dtype -> (numpy dtype as stored, itemsize)
STORED = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
          "U64": np.uint64, "BOOL": np.bool_}
NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
         "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool"}
MAX_HEADER = 100 << 20
PICKLES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Entry:
    """Where one tensor lies: its file, stored dtype, shape and byte offset."""

    file: Path
    dtype: str  # safetensors name: F32, BF16, ...
    shape: tuple[int, ...]
    offset: int


@dataclass
class Checkpoint:
    """The tensors of one checkpoint, by key; read lazily, converted on the way out."""

    origin: str  # what the user named: a file or a folder
    entries: dict[str, Entry] = field(default_factory=dict)
    config: dict[str, Any] | None = None  # config.json of a Hugging Face folder
    tensors: dict[str, np.ndarray] | None = None  # a pickle's tensors, already in memory

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key].shape

    def read(self, key: str) -> np.ndarray:
        """The tensor as numpy (bfloat16 widened to float32); a read-only memory map where possible."""
        if self.tensors is not None:
            return self.tensors[key]
        e = self.entries[key]
        count = int(np.prod(e.shape, dtype=np.int64))
        if count == 0:
            raw = np.zeros(e.shape, dtype=STORED[e.dtype])
        else:
            raw = np.memmap(e.file, dtype=STORED[e.dtype], mode="r", offset=e.offset, shape=(count,)).reshape(e.shape)
        if e.dtype == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw


def convert(value: np.ndarray, dtype: str, key: str, origin: str) -> np.ndarray:
    """``value`` as the spec's dtype: floats to floats, whole numbers to whole numbers, else a clear error."""
    want = np.dtype(dtype)
    have = value.dtype
    if have == want:
        return np.asarray(value, order="C")
    if want.kind == "f" and have.kind == "f":
        return np.asarray(value, dtype=want, order="C")
    if want.kind in "iu" and have.kind in "iub":
        info = np.iinfo(want)
        if value.size and (value.min() < info.min or value.max() > info.max):
            raise error(Span.nowhere(origin), f"`{key}` holds values outside {dtype}")
        return np.asarray(value, dtype=want, order="C")
    if want.kind == "b" and have.kind in "biu":
        return np.asarray(value != 0, order="C")
    hint = ("a quantized checkpoint needs its scales: dequantize it to float first" if have.kind in "iu" and
            want.kind == "f" else None)
    raise error(Span.nowhere(origin), f"`{key}` is {have}, the spec needs {dtype}", hint)


def open_checkpoint(path: str | Path) -> Checkpoint:
    """A .safetensors file, a Hugging Face folder, or a torch pickle (weights only)."""
    p = Path(path)
    if p.is_dir():
        return _folder(p)
    if not p.exists():
        raise error(Span.nowhere(str(p)), "no such weights file or folder")
    if p.suffix in PICKLES:
        return _pickle(p)
    ckpt = Checkpoint(str(p))
    _read_header(p, ckpt)
    return ckpt


def _folder(p: Path) -> Checkpoint:
    ckpt = Checkpoint(str(p))
    config = p / "config.json"
    if config.is_file():
        try:
            ckpt.config = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise error(Span.nowhere(str(config)), f"not a readable config.json: {exc}") from None
    index = p / "model.safetensors.index.json"
    if (p / "model.safetensors").is_file():
        _read_header(p / "model.safetensors", ckpt)
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            assert isinstance(weight_map, dict)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AssertionError) as exc:
            raise error(Span.nowhere(str(index)), f"not a readable shard index (`weight_map`): {exc}") from None
        shards = sorted(set(weight_map.values()))
        for shard in shards:
            if not isinstance(shard, str) or Path(shard).name != shard or not (p / shard).is_file():
                raise error(Span.nowhere(str(index)), f"names shard {shard!r}, which is not a file in {p}")
            _read_header(p / shard, ckpt)
        missing = sorted(set(weight_map) - set(ckpt.entries))
        if missing:
            raise error(Span.nowhere(str(index)), f"lists `{missing[0]}`, which its shard does not hold")
    else:
        files = sorted(p.glob("*.safetensors"))
        if len(files) == 1:
            _read_header(files[0], ckpt)
        else:
            pickles = [f.name for f in sorted(p.iterdir()) if f.suffix in PICKLES]
            hint = (f"it holds {', '.join(pickles)}: flashc reads a folder's safetensors files; pass the pickle file "
                    "itself (read with torch's weights-only loader)" if pickles else None)
            raise error(Span.nowhere(str(p)), "holds no model.safetensors nor model.safetensors.index.json"
                        + (f" ({len(files)} other .safetensors files)" if files else ""), hint)
    return ckpt


def _read_header(path: Path, ckpt: Checkpoint) -> None:
    where = str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a safetensors header")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, size - 8):
                raise ValueError(f"header length {length} does not fit the file")
            header = json.loads(fh.read(length).decode("utf-8"))
    except FileNotFoundError:
        raise error(Span.nowhere(where), "no such weights file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise error(Span.nowhere(where), f"cannot read safetensors weights: {exc}",
                    "flashc reads .safetensors (and .pt/.pth weights-only pickles)") from None
    if not isinstance(header, dict):
        raise error(Span.nowhere(where), "not a safetensors file: its header is not a table")
    base = 8 + length
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            assert all(type(d) is int and d >= 0 for d in shape) and type(start) is int and type(end) is int
        except (KeyError, TypeError, ValueError, AssertionError):
            raise error(Span.nowhere(where), f"tensor `{key}` has a malformed entry in the header") from None
        if dtype not in STORED:
            raise error(Span.nowhere(where), f"tensor `{key}` is {dtype}, which flashc cannot convert",
                        "supported: " + ", ".join(NAMES.values()))
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(STORED[dtype]).itemsize
        if not 0 <= start <= end or end - start != nbytes or base + end > size:
            raise error(Span.nowhere(where), f"tensor `{key}`: its byte range [{start}, {end}) does not hold "
                        f"{dtype}{list(shape)} inside the file")
        if key in ckpt.entries:
            raise error(Span.nowhere(where), f"tensor `{key}` is also in {ckpt.entries[key].file}")
        ckpt.entries[key] = Entry(path, dtype, shape, base + start)


def _pickle(p: Path) -> Checkpoint:
    """A torch checkpoint (torchvision's .pth): torch's weights-only loader, which runs no code."""
    try:
        import torch
    except ImportError:
        raise error(Span.nowhere(str(p)), "reading a torch pickle needs torch",
                    "convert it to .safetensors, or install torch") from None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (UnpicklingError, RuntimeError, ...)
        raise error(Span.nowhere(str(p)), f"not a weights-only torch checkpoint: {' '.join(str(exc).split())[:200]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise error(Span.nowhere(str(p)), "holds no state dict of tensors")
    tensors = {}
    for key, value in state.items():
        value = value.detach()
        tensors[key] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    ckpt = Checkpoint(str(p), tensors=tensors)
    ckpt.entries = {k: Entry(p, "F32", tuple(v.shape), 0) for k, v in tensors.items()}  # shapes; reads use `tensors`
    return ckpt


SAFETENSORS_DTYPES = {np.dtype(v).name: k for k, v in STORED.items() if k != "BF16"}


def write_safetensors(path: str | Path, layout: dict[str, tuple[str, tuple[int, ...]]], tensors: Any,
                      metadata: dict[str, str] | None = None) -> None:
    """Stream ``tensors`` ((name, array) pairs, in ``layout``'s order) into a .safetensors file.

    ``layout`` gives each name's dtype and shape up front, so the header is written first and
    each tensor follows as it comes: a model larger than memory can be written. Atomic.
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata or {})}
    offset = 0
    for name, (dtype, shape) in layout.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPES[np.dtype(dtype).name], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # tensors start 8-byte aligned, as safetensors writes them
    with atomic_files(Path(path)) as (fh, _):
        fh.write(struct.pack("<Q", len(blob)) + blob)
        order = iter(layout.items())
        for name, array in tensors:
            expected, (dtype, shape) = next(order)
            assert name == expected and tuple(array.shape) == tuple(shape), (name, expected)
            fh.write(memoryview(np.asarray(array, dtype=dtype, order="C")).cast("B"))
