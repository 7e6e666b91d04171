"""Checkpoints: each one a directory, committed whole by a rename, verified when read back.

``RUN/TAG/`` (TAG is ``last`` or ``best``) holds ``weights.safetensors`` (the model's weights
only: what ``compile --weights`` reads), ``state.safetensors`` (optimizer tensors and the
torch / CUDA / NumPy random states), ``info.json`` (epoch, step inside the epoch, schedule,
early-stopping state, history, Python's random state) and ``manifest.json`` (size and SHA-256
of each, written last). A save writes a fresh ``RUN/.TAG.*.tmp/`` and swaps it in with two
renames (old set aside, new into place); a kill at any moment leaves the previous set or the
new one, never a mix, and :func:`recover` finishes or undoes a swap that was cut short.
``RUN/TAG.safetensors``, ``RUN/TAG.state.safetensors`` and ``RUN/TAG.json`` are relative
symbolic links into ``RUN/TAG/``, so those paths always show the current set. Nothing is
pickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from flashc.diagnostics import Span, error
from flashc.weights import write_error

LINKS = {"weights.safetensors": "{tag}.safetensors", "state.safetensors": "{tag}.state.safetensors",
         "info.json": "{tag}.json"}


def model_state(module: torch.nn.Module, weight_names: list[str]) -> dict[str, torch.Tensor]:
    """The spec's weights by path (tied aliases left out: each tensor once)."""
    state = module.state_dict()
    return {k: state[k].detach().cpu().contiguous() for k in weight_names}


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        plain["state"][str(idx)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(idx)][key] = value
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in plain["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def capture_rng(device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random state a step can draw from: torch (CPU and CUDA), NumPy's global, Python's."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, words, gauss_next = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [version, list(words), gauss_next]}


def restore_rng(tensors: dict[str, torch.Tensor], plain: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and device.type == "cuda":
        torch.cuda.set_rng_state_all(cuda)
    if "rng.numpy" in tensors:
        kind, pos, has_gauss, gauss = plain["numpy"]
        np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "python" in plain:
        version, words, gauss_next = plain["python"]
        random.setstate((version, tuple(words), gauss_next))


def save(run: Path, tag: str, module: torch.nn.Module, weight_names: list[str],
         optimizer: torch.optim.Optimizer, info: dict[str, Any], device: torch.device) -> None:
    """Write the checkpoint ``tag`` as one unit; a failure leaves the previous one in place."""
    save_state(run, tag, model_state(module, weight_names), optimizer.state_dict(), info, device)


def save_state(run: Path, tag: str, weights: dict[str, torch.Tensor], optimizer: dict[str, Any],
               info: dict[str, Any], device: torch.device) -> None:
    """:func:`save` from states already gathered (the weights by path, a position-keyed optimizer
    state dict): what the main process of a DDP / FSDP run writes."""
    tensors, plain = _flatten_optimizer(optimizer)
    rng_tensors, rng_plain = capture_rng(device)
    files = {
        "weights.safetensors": save_bytes(weights, metadata={"format": "pt"}),
        "state.safetensors": save_bytes({**tensors, **rng_tensors}),
        "info.json": json.dumps({**info, "optimizer": plain, "rng": rng_plain}, indent=1, default=float).encode(),
    }
    commit(run, tag, files)


def commit(run: Path, tag: str, files: dict[str, bytes]) -> None:
    """Files into ``run/tag/`` all at once: written under a temporary name, then renamed into place."""
    recover(run, tag)
    final, old = run / tag, run / f".{tag}.old"
    try:
        tmp = Path(tempfile.mkdtemp(dir=run, prefix=f".{tag}.", suffix=".tmp"))
    except OSError as exc:
        raise write_error(final, exc) from None
    try:
        manifest = {}
        for name, data in files.items():
            _write_file(tmp / name, data)
            manifest[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        _write_file(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
        if final.exists():
            _rename(final, old)
        _rename(tmp, final)
        _sync(run)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        recover(run, tag)
        raise write_error(final, exc) from None
    shutil.rmtree(old, ignore_errors=True)
    _link(run, tag)


def _write_file(path: Path, data: bytes) -> None:
    with path.open("xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _rename(src: Path, dst: Path) -> None:
    os.rename(src, dst)


def _sync(directory: Path) -> None:
    """Make a directory's entries (new files, renames) durable, where the platform allows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot sync a directory: durability is best effort
            os.fsync(fd)
    finally:
        os.close(fd)


def recover(run: Path, tag: str) -> None:
    """Finish what a killed save left: a set aside but not replaced comes back; leftovers go."""
    final, old = run / tag, run / f".{tag}.old"
    if old.is_dir():
        if final.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, final)
    for tmp in run.glob(f".{tag}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    if final.is_dir():
        _link(run, tag)


def _link(run: Path, tag: str) -> None:
    """RUN/TAG.safetensors (and friends) -> TAG/weights.safetensors, replaced atomically if stale."""
    for inner, outer in LINKS.items():
        link, target = run / outer.format(tag=tag), f"{tag}/{inner}"
        if link.is_symlink() and os.readlink(link) == target:
            continue
        tmp = run / f".{link.name}.link"
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(target, tmp)
            os.replace(tmp, link)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise write_error(link, exc) from None


def remove(run: Path, tag: str) -> None:
    """Delete checkpoint ``tag`` (its folder, links and leftovers)."""
    recover(run, tag)
    shutil.rmtree(run / tag, ignore_errors=True)
    for outer in LINKS.values():
        link = run / outer.format(tag=tag)
        if link.is_symlink() or link.is_file():
            link.unlink()


def exists(run: Path, tag: str) -> bool:
    recover(run, tag)
    return (run / tag / "manifest.json").is_file()


def load(run: Path, tag: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(weights, optimizer state dict, info); ``info["rng"]`` holds the random states for :func:`restore_rng`."""
    recover(run, tag)
    folder = run / tag
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        data = {}
        for name in LINKS:
            data[name] = (folder / name).read_bytes()
            entry = manifest[name]
            if len(data[name]) != entry["bytes"] or hashlib.sha256(data[name]).hexdigest() != entry["sha256"]:
                raise error(Span.nowhere(str(folder / name)), "the checkpoint file does not match its manifest "
                            "(changed or damaged after it was written)")
        weights = load_bytes(data["weights.safetensors"])
        tensors = load_bytes(data["state.safetensors"])
        info = json.loads(data["info.json"])
    except FileNotFoundError as exc:
        raise error(Span.nowhere(str(folder)), f"no complete checkpoint: {Path(exc.filename).name} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise error(Span.nowhere(str(folder)), f"cannot read the checkpoint: {exc}") from None
    info["rng"] = ({k: tensors.pop(k) for k in list(tensors) if k.startswith("rng.")}, info.get("rng", {}))
    return weights, _unflatten_optimizer(tensors, info.pop("optimizer")), info
