"""Datasets in memory: equal-length named arrays, and their seeded train / validation / test split.

Kept apart from file loading (``data``) and the built-in sets (``builtin``) so both
can build a Dataset without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Equal-length named arrays; row i of each belongs to sample i.

    ``groups`` (optional) labels rows that must land in the same split, e.g. pairs
    built from the same images, so no image is seen in training and in testing.
    """

    arrays: dict[str, np.ndarray]
    groups: np.ndarray | None = None
    origin: str | None = None  # the file or built-in set, named in error messages and in summary.json
    lines: np.ndarray | None = None  # a CSV's line number of each row, so errors point into the file

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def take(self, index: np.ndarray) -> Dataset:
        groups = self.groups[index] if self.groups is not None else None
        lines = self.lines[index] if self.lines is not None else None
        return Dataset({k: v[index] for k, v in self.arrays.items()}, groups, self.origin, lines)

    def row(self, index: int) -> str:
        """Row ``index`` as a user finds it: a CSV line, else the row of the arrays (counted from 0)."""
        return f"line {int(self.lines[index])}" if self.lines is not None else f"row {index}"


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


def split(data: Dataset, val: float, test: float, seed: int) -> Splits:
    """Seeded shuffle, then train / validation / test by share (whole groups when the data has them)."""
    n = len(data)
    rng = np.random.default_rng(seed)
    if data.groups is None:
        order = rng.permutation(n)
    else:  # shuffle the groups, keep each group's rows together
        keys = rng.permutation(np.unique(data.groups))
        rank = np.empty(int(keys.max()) + 1, dtype=np.int64)
        rank[keys] = np.arange(len(keys))
        order = np.argsort(rank[data.groups], kind="stable")
    n_test, n_val = int(round(n * test)), int(round(n * val))
    if data.groups is not None:  # move the cuts to group boundaries
        g = data.groups[order]
        n_test = _boundary(g, n_test)
        n_val = _boundary(g, n_test + n_val) - n_test
    return Splits(data.take(order[n_test + n_val:]), data.take(order[n_test:n_test + n_val]), data.take(order[:n_test]))


def _boundary(groups: np.ndarray, cut: int) -> int:
    """The first index at or after ``cut`` where a new group starts."""
    while 0 < cut < len(groups) and groups[cut] == groups[cut - 1]:
        cut += 1
    return cut
