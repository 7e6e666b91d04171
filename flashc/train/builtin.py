"""Built-in datasets that need no network: scikit-learn's digits and small generators.

Each fills the spec's own input and target names, shaped as the spec declares,
so `flashc train specs/lenet5.flash --data digits` just works.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flashc.diagnostics import Span, error
from flashc.ir.graph import Graph
from flashc.ir.types import TensorType
from flashc.train.dataset import Dataset


def _slots(graph: Graph) -> tuple[list[tuple[str, TensorType]], list[tuple[str, TensorType]]]:
    targets = list(graph.train.targets) if graph.train else []
    noise = set(graph.train.noise) if graph.train else set()  # `noise` inputs are drawn by the loop
    return [(v.name, v.type) for v in graph.inputs if v.name not in noise], targets


def _static(t: TensorType, axis: int, name: str) -> int:
    d = t.shape[axis]
    if not isinstance(d, int):
        raise error(Span.nowhere("data"), f"`{name}` needs a fixed size on axis {axis} for this dataset, got {t}")
    return d


def _images(images: np.ndarray, t: TensorType, name: str) -> np.ndarray:
    """8x8 digit images as the spec wants them: [B, 64], [B, 8, 8] or [B, 1, H, W] (zero-padded)."""
    n = len(images)
    if t.rank == 2:
        return images.reshape(n, -1)
    if t.rank == 4:
        h, w = _static(t, 2, name), _static(t, 3, name)
        if h < 8 or w < 8:
            raise error(Span.nowhere("data"), f"digits are 8x8; `{name}` is {t}")
        out = np.zeros((n, 1, h, w), dtype=np.float32)
        top, left = (h - 8) // 2, (w - 8) // 2
        out[:, 0, top:top + 8, left:left + 8] = images
        return out
    return images.reshape((n,) + tuple(_static(t, i, name) for i in range(1, t.rank)))


def digits(graph: Graph, arg: str | None) -> Dataset:
    """scikit-learn's 1,797 8x8 digits, scaled to [0, 1]; labels 0-9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    inputs, targets = _slots(graph)
    floats = [(n, t) for n, t in inputs if t.is_float]
    if len(floats) != 1:
        raise error(Span.nowhere("digits"), "the digits dataset fills one float input; the spec has "
                    f"{len(floats)}")
    arrays = {floats[0][0]: _images(images, floats[0][1], floats[0][0])}
    for name, t in targets:
        arrays[name] = d.target.astype(np.int64) if not t.is_float else _images(images, t, name)
    return Dataset(arrays)


def digit_pairs(graph: Graph, arg: str | None) -> Dataset:
    """Pairs of digits for a Siamese net: two image inputs and a target 1.0 when the digits match."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    rng = np.random.default_rng(int(arg or 0))
    n = len(images)
    # Images are dealt into 60 groups and pairs are drawn within a group, so a split by
    # group never shows the same image in training and in testing.
    image_group = rng.permutation(n) % 60
    members = [[np.flatnonzero((image_group == g) & (d.target == k)) for k in range(10)] for g in range(60)]
    in_group = [np.flatnonzero(image_group == g) for g in range(60)]
    first = rng.integers(0, n, n * 2)
    same = rng.random(n * 2) < 0.5
    second = np.array([
        rng.choice(members[image_group[i]][d.target[i]]) if s else rng.choice(in_group[image_group[i]])
        for i, s in zip(first, same)
    ])
    inputs, targets = _slots(graph)
    if len(inputs) != 2 or len(targets) != 1:
        raise error(Span.nowhere("digit_pairs"), "digit_pairs fills two image inputs and one target")
    (a, ta), (b, tb) = inputs
    label = (d.target[first] == d.target[second]).astype(np.float32)
    return Dataset({a: _images(images[first], ta, a), b: _images(images[second], tb, b), targets[0][0]: label},
                   groups=image_group[first])


def shapes(graph: Graph, arg: str | None) -> Dataset:
    """Noisy images of random rectangles and discs; the target is the shape's 0/1 mask."""
    inputs, targets = _slots(graph)
    (name, t), (mask_name, _) = inputs[0], targets[0]
    h, w = _static(t, 2, name), _static(t, 3, name)
    count = int(arg or 512)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.zeros((count, 1, h, w), dtype=np.float32)
    for i in range(count):
        cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
        r = rng.integers(max(2, h // 8), max(3, h // 4))
        if rng.random() < 0.5:
            masks[i, 0] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            masks[i, 0] = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    images = masks * rng.uniform(0.6, 1.0, (count, 1, 1, 1)) + rng.normal(0, 0.15, masks.shape)
    return Dataset({name: images.astype(np.float32), mask_name: masks})


def default_text() -> str:
    """A text that ships with Python itself: its license (about 13,000 characters)."""
    for candidate in (Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "LICENSE.txt",
                      Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "LICENSE.txt"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace")
    import difflib  # fallback: the source of a pure-Python stdlib module is plain text too

    return Path(difflib.__file__).read_text(encoding="utf-8")


def chars(graph: Graph, arg: str | None) -> Dataset:
    """Character windows of a text: tokens[i] predicts targets[i] = tokens[i + 1] (bytes as ids)."""
    inputs, targets = _slots(graph)
    (name, t), (target, _) = inputs[0], targets[0]
    length = int(arg) if arg else _static(t, 1, name)
    data = np.frombuffer(default_text().encode("ascii", errors="replace"), dtype=np.uint8).astype(np.int64)
    starts = np.arange(0, len(data) - length - 1, max(1, length // 4))
    windows = np.stack([data[s:s + length + 1] for s in starts])
    # Overlapping windows of one stretch of 8 windows' length stay in one split; only the
    # few windows at a stretch's edge share text with the next stretch.
    return Dataset({name: windows[:, :-1], target: windows[:, 1:]}, groups=starts // (8 * length))


def blobs(graph: Graph, arg: str | None) -> Dataset:
    """Gaussian clusters, one per class, for quick classification tests."""
    inputs, targets = _slots(graph)
    (name, t), (target, _) = inputs[0], targets[0]
    features = _static(t, 1, name)
    classes = int(arg or 3)
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (classes, features))
    labels = rng.integers(0, classes, 600)
    points = centers[labels] + rng.normal(0, 1, (600, features))
    return Dataset({name: points.astype(np.float32), target: labels.astype(np.int64)})


BUILTIN: dict[str, Callable[[Graph, str | None], Dataset]] = {
    "digits": digits, "digit_pairs": digit_pairs, "shapes": shapes, "chars": chars, "blobs": blobs,
}


def builtin(source: str, graph: Graph) -> Dataset:
    """`name` or `name:arg`, e.g. `shapes:1024` or `chars:64`."""
    name, _, arg = source.partition(":")
    return BUILTIN[name](graph, arg or None)
