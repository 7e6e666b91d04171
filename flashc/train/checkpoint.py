"""Checkpoints: weights as safetensors, optimizer tensors and RNG state beside them.

`TAG.safetensors` holds only model weights (what `compile --weights` reads);
`TAG.state.safetensors` holds optimizer tensors and the torch RNG state;
`TAG.json` the epoch, schedule, early-stopping state and history. Every file is
written atomically; nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from flashc.weights import write_atomic


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


def save(run: Path, tag: str, module: torch.nn.Module, weight_names: list[str],
         optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    write_atomic(run / f"{tag}.safetensors", save_bytes(model_state(module, weight_names), metadata={"format": "pt"}))
    tensors, plain = _flatten_optimizer(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    write_atomic(run / f"{tag}.state.safetensors", save_bytes(tensors))
    write_atomic(run / f"{tag}.json", json.dumps({**info, "optimizer": plain}, indent=1, default=float).encode())


def load(run: Path, tag: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(weights, optimizer state dict, info with the RNG state restored by the caller)."""
    weights = load_bytes((run / f"{tag}.safetensors").read_bytes())
    tensors = load_bytes((run / f"{tag}.state.safetensors").read_bytes())
    info = json.loads((run / f"{tag}.json").read_text())
    info["rng_torch"] = tensors.pop("rng.torch")
    return weights, _unflatten_optimizer(tensors, info.pop("optimizer")), info
