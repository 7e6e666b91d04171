"""One generic loader: a checkpoint, seen through a map, under the spec's weight names.

`open_weights` picks the map (the one given, or among the spec's `NAME.*.map` files the
one the checkpoint fits best: a Hugging Face folder's `architectures` first), plans where
every spec weight comes from (rename, transpose, split, reshape; tied names accepted),
and reports every missing, unexpected and misshapen key in one error. Tensors are then
read one at a time, converted to the spec's dtype, so a large model never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flashc.checkpoint import Checkpoint, convert, open_checkpoint
from flashc.diagnostics import FlashError, Span, error
from flashc.ir.graph import Graph
from flashc.weightmap import Rule, WeightMap, maps_beside, read_map
from flashc.weights import NUMPY_DTYPES, CheckedWeights, iter_init, match_keys, tied_names

SHOWN = 8  # keys listed per kind of problem


@dataclass(frozen=True)
class Source:
    """Where one name the spec knows comes from: a checkpoint key, and the rule's target it is."""

    key: str
    rule: Rule | None
    index: int  # which of the rule's targets
    shape: tuple[int, ...]
    targets: tuple[str, ...] = ()  # all the rule's targets for this key (a split's parts)


@dataclass
class Plan:
    """The checkpoint's keys matched against a spec through one map (or none)."""

    wmap: WeightMap | None
    sources: dict[str, Source]  # spec name (path or tied name) -> where it comes from
    unexpected: list[str]
    keys: dict[str, str]  # weight path -> the spec name it is read under
    missing: list[tuple[str, list[str]]]
    misshapen: list[str]

    @property
    def problems(self) -> int:
        return len(self.unexpected) + len(self.missing) + len(self.misshapen)


def shape_of(graph: Graph, name: str, paths: dict[str, str]) -> tuple[int, ...] | None:
    """The spec's shape for a weight path or one of its tied names."""
    path = paths.get(name)
    return graph.weights[path].spec.shape if path is not None else None


def _stepped(shape: tuple[int, ...], rule: Rule, index: int, graph: Graph, targets: list[str],
             paths: dict[str, str]) -> tuple[int, ...] | str:
    """The shape a rule's steps give target ``index``, or why they cannot apply."""
    shapes = [shape]
    for step in rule.steps:
        if step.kind == "transpose":
            shapes = [s[:-2] + s[-2:][::-1] for s in shapes]
        elif step.kind == "split":
            (s,) = shapes
            axis = step.axis % len(s) if s else 0
            if not s or not -len(s) <= step.axis < len(s):
                return f"cannot split {list(s)} along axis {step.axis}"
            wanted = [shape_of(graph, t, paths) for t in targets]
            sizes = [w[axis] if w is not None and len(w) == len(s) else None for w in wanted]
            if None in sizes:
                if s[axis] % len(targets):
                    return f"cannot split {list(s)} along axis {step.axis} into {len(targets)} equal parts"
                sizes = [s[axis] // len(targets)] * len(targets)
            if sum(sizes) != s[axis]:
                return f"cannot split {list(s)} along axis {step.axis} into parts of {sizes}"
            shapes = [s[:axis] + (n,) + s[axis + 1:] for n in sizes]
        else:  # reshape
            out = []
            for s, t in zip(shapes if len(shapes) > 1 else shapes * len(targets), targets):
                want = shape_of(graph, t, paths)
                if want is None or int(np.prod(want)) != int(np.prod(s)):
                    return f"cannot reshape {list(s)} to {list(want) if want else '?'}"
                out.append(want)
            shapes = out
    return shapes[index] if len(shapes) > 1 else shapes[0]


def plan(graph: Graph, ckpt: Checkpoint, wmap: WeightMap | None) -> Plan:
    """Match every checkpoint key to a spec name; only tensors given twice (tied, or two keys for one
    weight) are read, to check that the copies agree."""
    aliases = tied_names(graph)
    paths = {p: p for p in graph.weights} | {a: p for p, names in aliases.items() for a in names}
    sources: dict[str, Source] = {}
    duplicates: list[tuple[str, Source]] = []
    unexpected: list[str] = []
    for key in sorted(ckpt.entries):
        rule, values = wmap.match(key) if wmap else (None, {})
        if rule is not None and rule.drop:
            continue
        targets = [t.fill(values) for t in rule.targets] if rule else [wmap.stripped(key) if wmap else key]
        for index, target in enumerate(targets):
            if target not in paths:
                unexpected.append(f"`{key}`" + (f" (as `{target}`)" if target != key else ""))
                continue
            shape = _stepped(ckpt.shape(key), rule, index, graph, targets, paths) if rule else ckpt.shape(key)
            if isinstance(shape, str):
                raise error(Span.nowhere(ckpt.origin), f"`{key}`: {shape} (rule on line {rule.line} of {wmap.path})")
            source = Source(key, rule, index, tuple(shape), tuple(targets))
            if target in sources:
                duplicates.append((target, source))
            else:
                sources[target] = source
    weights = _Reader(graph, ckpt, sources)
    for target, source in duplicates:
        first = sources[target]
        if first.shape != source.shape or not np.array_equal(weights.read_source(first), weights.read_source(source)):
            raise error(Span.nowhere(ckpt.origin), f"`{first.key}` and `{source.key}` both give `{target}`, with "
                        "different values", "the spec keeps one tensor: keep one of them")
    keys, missing, misshapen = match_keys(graph, {t: s.shape for t, s in sources.items()},
                                          lambda t: weights.read_source(sources[t]), ckpt.origin)
    return Plan(wmap, sources, unexpected, keys, missing, misshapen)


class _Reader:
    """Reads a spec name's tensor: the checkpoint key, then the rule's steps (one source cached)."""

    def __init__(self, graph: Graph, ckpt: Checkpoint, sources: dict[str, Source]) -> None:
        self.graph, self.ckpt, self.sources = graph, ckpt, sources
        aliases = tied_names(graph)
        self.paths = {p: p for p in graph.weights} | {a: p for p, names in aliases.items() for a in names}
        self._cache: tuple[str, list[np.ndarray]] | None = None

    def read_source(self, source: Source) -> np.ndarray:
        if self._cache is None or self._cache[0] != source.key:
            self._cache = (source.key, self._apply(source))
        parts = self._cache[1]
        return parts[source.index] if len(parts) > 1 else parts[0]

    def _apply(self, source: Source) -> list[np.ndarray]:
        arrays = [self.ckpt.read(source.key)]
        rule = source.rule
        if rule is None:
            return arrays
        targets = source.targets
        for step in rule.steps:
            if step.kind == "transpose":
                arrays = [np.swapaxes(a, -1, -2) if a.ndim >= 2 else a for a in arrays]
            elif step.kind == "split":
                (a,) = arrays
                axis = step.axis % a.ndim
                sizes = [self.sources[t].shape[axis] if t in self.sources else a.shape[axis] // len(targets)
                         for t in targets]
                arrays = np.split(a, np.cumsum(sizes)[:-1], axis=axis)
            else:
                full = arrays if len(arrays) > 1 else arrays * len(targets)
                arrays = [a.reshape(shape_of(self.graph, t, self.paths)) for a, t in zip(full, targets)]
        return arrays



class LoadedWeights(CheckedWeights):
    """A checkpoint under the spec's weight paths, checked; each tensor read when asked for."""

    def __init__(self, graph: Graph, ckpt: Checkpoint, chosen: Plan, seed: int = 0) -> None:
        self.graph, self.ckpt, self.plan, self.seed = graph, ckpt, chosen, seed
        self.reader = _Reader(graph, ckpt, chosen.sources)
        self._init: dict[str, np.ndarray] | None = None

    @property
    def initialised(self) -> list[str]:
        """Weight paths the checkpoint lacked, which keep the seeded initial values (--allow-missing)."""
        return [p for p, _ in self.plan.missing]

    def __getitem__(self, path: str) -> np.ndarray:
        dtype = self.graph.weights[path].spec.dtype
        if path not in self.plan.keys:
            if self._init is None:
                missing = set(self.initialised)
                self._init = {p: a for p, a in iter_init(self.graph, self.seed) if p in missing}
            return self._init[path]
        source = self.plan.sources[self.plan.keys[path]]
        value = self.reader.read_source(source)
        return convert(value, np.dtype(NUMPY_DTYPES[dtype]).name, source.key, self.ckpt.origin)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.graph.weights))

    def __len__(self) -> int:
        return len(self.graph.weights)


def choose(graph: Graph, ckpt: Checkpoint, spec_path: str | Path | None, map_path: str | Path | None) -> Plan:
    """The plan of the given map, or the best of: the spec's own names and each map beside the spec."""
    if map_path is not None:
        return plan(graph, ckpt, read_map(map_path))
    candidates: list[WeightMap | None] = [None] + [read_map(p) for p in maps_beside(spec_path or "")]
    architectures = set((ckpt.config or {}).get("architectures") or [])
    if architectures:  # a Hugging Face folder: the maps written for its architecture come first
        named = [m for m in candidates if m is not None and architectures & set(m.architectures)]
        candidates = named + [m for m in candidates if m not in named]
    best: Plan | None = None
    failure: FlashError | None = None
    for wmap in candidates:
        try:
            result = plan(graph, ckpt, wmap)
        except FlashError as exc:  # copies that disagree: the error stands unless another map fits exactly
            failure = failure or exc
            continue
        if result.problems == 0:
            return result
        if best is None or result.problems < best.problems:
            best = result
    if failure is not None:
        raise failure
    assert best is not None  # a candidate succeeded, or the failure was raised
    return best


def open_weights(graph: Graph, path: str | Path, spec_path: str | Path | None = None, *,
                 map_path: str | Path | None = None, allow_missing: bool = False, allow_unexpected: bool = False,
                 seed: int = 0) -> LoadedWeights:
    """The checkpoint at ``path`` (file or folder) under the spec's names; one error lists every mismatch."""
    ckpt = open_checkpoint(path)
    chosen = choose(graph, ckpt, spec_path, map_path)
    if chosen.wmap is not None:  # a rule naming no weight of the spec is a mistake in the map, at its line
        chosen.wmap.check_targets([*graph.weights, *(a for names in tied_names(graph).values() for a in names)],
                                  graph.name)
    report(graph, ckpt, chosen, allow_missing, allow_unexpected)
    return LoadedWeights(graph, ckpt, chosen, seed)


def report(graph: Graph, ckpt: Checkpoint, chosen: Plan, allow_missing: bool, allow_unexpected: bool) -> None:
    """One error listing every missing, unexpected and misshapen key, with the flags that relax it."""
    parts, hints = [], []
    if chosen.missing and not allow_missing:
        parts.append(_listed("missing", [f"`{p}` is missing" + (f" (nor {', '.join(f'`{a}`' for a in also)})"
                                                                if also else "") for p, also in chosen.missing]))
        hints.append("--allow-missing keeps their seeded initial values")
    if chosen.unexpected and not allow_unexpected:
        parts.append(_listed("unexpected", [f"{u} is unexpected" for u in chosen.unexpected]))
        hints.append("--allow-unexpected ignores keys the spec does not use")
    if chosen.misshapen:
        parts.append(_listed("misshapen", chosen.misshapen))
    if not parts:
        return
    through = f" (keys read through {chosen.wmap.path})" if chosen.wmap else ""
    if not chosen.wmap:
        hints.append("keys are read under the spec's own names: no map beside the spec fits better "
                     "(`--map FILE` names one)")
        if ckpt.config is not None:
            hints.append(f"`flashc new --from-hf {Path(ckpt.origin) / 'config.json'} -o model.flash` writes a spec "
                         "and map for this checkpoint")
    raise error(Span.nowhere(ckpt.origin), f"the weights do not fit model {graph.name}{through}:\n  " + ";\n  ".join(parts),
                "; ".join(hints))


def _listed(kind: str, items: list[str]) -> str:
    more = f"; and {len(items) - SHOWN} more {kind}" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def materialize(weights: LoadedWeights) -> dict[str, Any]:
    """Every weight in memory (for a torch module, which holds them all anyway)."""
    return {p: weights[p] for p in weights}
