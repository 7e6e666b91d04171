"""Writing a spec's weights: seeded, trained or loaded, one .safetensors file that every flashc output reads.

Tied weights are written once, under the weight's own path (`wte.weight`, not also
`linear.weight`), as `safetensors.torch.save_model` does; readers find them under any tied
name. The file's metadata says which model and seed it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flashc.checkpoint import write_safetensors
from flashc.ir.graph import Graph
from flashc.version import __version__
from flashc.weights import NUMPY_DTYPES, CheckedWeights, WeightSource, select_weights, to_numpy


def save_weights(graph: Graph, path: str | Path, weights: Mapping[str, Any] | None = None, seed: int = 0) -> Path:
    """Write ``weights`` (a state dict, numpy arrays, an opened checkpoint) or the seeded ones to ``path``."""
    if weights is not None and not isinstance(weights, CheckedWeights):
        weights = select_weights(graph, to_numpy(weights), "weights")
    layout = {p: (np.dtype(NUMPY_DTYPES[w.spec.dtype]).name, w.spec.shape) for p, w in sorted(graph.weights.items())}
    held = "seeded initialisation" if weights is None else "given weights"
    metadata = {"format": "pt", "model": graph.name, "spec_sha256": graph.source_hash, "flashc_version": __version__,
                "weights": held + (f", seed {seed}" if weights is None else "")}
    source = WeightSource(graph, weights, seed)
    write_safetensors(path, layout, ((p, np.asarray(a, dtype=layout[p][0])) for p, a in source), metadata)
    return Path(path)
