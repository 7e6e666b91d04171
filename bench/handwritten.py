"""The benchmark's baselines: the same models written by hand in plain PyTorch.

Each class is the architecture of one spec, written the way a PyTorch user would
(nn.Sequential, nn.MultiheadAttention, nn.TransformerEncoder). `from_flashc`
maps a flashc state dict onto the hand-written module's names, so the bench can
check that both compute the same function before it times them.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn


class DigitsMLP(nn.Module):
    """specs/mlp_digits.flash: 64 -> 128 -> 64 -> 10, ReLU, dropout after the first layer."""

    def __init__(self, pixels: int = 64, hidden: int = 128, classes: int = 10, p: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(pixels, hidden), nn.ReLU(), nn.Dropout(p),
            nn.Linear(hidden, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeNet5(nn.Module):
    """specs/lenet5.flash: the classic LeNet-5 with tanh and average pooling."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PostNormEncoderLayer(nn.Module):
    """The text classifier's layer: post-norm, ReLU, dropout after attention and in the MLP
    (no dropout on the attention weights, as in the spec)."""

    def __init__(self, d: int, heads: int, ff: int, p: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)
        self.drop1 = nn.Dropout(p)
        self.norm1 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.drop2 = nn.Dropout(p)
        self.ff2 = nn.Linear(ff, d)
        self.drop3 = nn.Dropout(p)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)
        x = self.norm1(x + self.drop1(a))
        return self.norm2(x + self.drop3(self.ff2(self.drop2(F.relu(self.ff1(x))))))


class TextClassifier(nn.Module):
    """specs/text_classifier.flash: token + position embeddings, post-norm encoder, mean pool, linear."""

    def __init__(self, vocab: int = 10000, ctx: int = 256, d: int = 128, heads: int = 4, ff: int = 512,
                 depth: int = 2, classes: int = 4, p: float = 0.1):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.drop = nn.Dropout(p)
        self.layers = nn.ModuleList(PostNormEncoderLayer(d, heads, ff, p) for _ in range(depth))
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        h = self.drop(self.tok(tokens) + self.pos(torch.arange(T, device=tokens.device)))  # [B, T, d]
        for layer in self.layers:
            h = layer(h, padding)
        return self.head(h.mean(1))  # [B, classes]


def encoder(d: int = 256, heads: int = 8, ff: int = 1024, depth: int = 4, p: float = 0.1) -> nn.TransformerEncoder:
    """specs/encoder4.flash as torch's own pre-norm TransformerEncoder (GELU, final LayerNorm)."""
    layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=p, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(d), enable_nested_tensor=False)


# --- flashc weights under hand-written names ------------------------------------------------------

_QKV = re.compile(r"^(.*)\.attention\.([qkv])\.(weight|bias)$")


def _fuse_qkv(state: dict[str, torch.Tensor], attn_name: str) -> dict[str, torch.Tensor]:
    """flashc's separate q/k/v projections as nn.MultiheadAttention's in_proj, keyed by layer prefix."""
    out: dict[str, torch.Tensor] = {}
    prefixes = sorted({m.group(1) for k in state if (m := _QKV.match(k))})
    for pre in prefixes:
        for kind in ("weight", "bias"):
            out[f"{pre}.{attn_name}.in_proj_{kind}"] = torch.cat([state[f"{pre}.attention.{x}.{kind}"] for x in "qkv"])
            out[f"{pre}.{attn_name}.out_proj.{kind}"] = state[f"{pre}.attention.out.{kind}"]
    return out


def _by_order(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same layers in the same order (sequential nets): copy position by position, shapes checked."""
    mine = module.state_dict()
    theirs = list(state.values())
    assert len(mine) == len(theirs), (len(mine), len(theirs))
    out = {}
    for (name, want), got in zip(mine.items(), theirs):
        assert want.shape == got.shape, (name, want.shape, got.shape)
        out[name] = got
    return out


def _text_classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = _fuse_qkv(state, "attn")
    rename = {"layernorm": "norm1", "linear": "ff1", "linear_1": "ff2", "layernorm_1": "norm2"}
    for k, v in state.items():
        if _QKV.match(k) or ".attention.out." in k:
            continue
        m = re.match(r"^encoder\.(\d+)\.(\w+)\.(weight|bias)$", k)
        if m:
            out[f"layers.{m.group(1)}.{rename[m.group(2)]}.{m.group(3)}"] = v
            continue
        out[{"embedding.weight": "tok.weight", "embedding_1.weight": "pos.weight",
             "linear.weight": "head.weight", "linear.bias": "head.bias"}[k]] = v
    out = {k.replace("encoder.", "layers.", 1) if k.startswith("encoder.") else k: v for k, v in out.items()}
    return out


def _encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = _fuse_qkv(state, "self_attn")
    rename = {"layernorm": "norm1", "layernorm_1": "norm2", "linear": "linear1", "linear_1": "linear2"}
    for k, v in state.items():
        if _QKV.match(k) or ".attention.out." in k:
            continue
        m = re.match(r"^layers\.(\d+)\.(\w+)\.(weight|bias)$", k)
        if m:
            out[f"layers.{m.group(1)}.{rename[m.group(2)]}.{m.group(3)}"] = v
        else:
            out[k.replace("layernorm.", "norm.", 1)] = v
    return out


def from_flashc(kind: str, module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a flashc state dict (of the spec `kind`) into the hand-written module, strictly."""
    mapped = {"mlp": _by_order, "lenet5": _by_order}.get(kind)
    converted = mapped(module, state) if mapped else {"text": _text_classifier, "encoder": _encoder}[kind](state)
    module.load_state_dict(converted, strict=True)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
