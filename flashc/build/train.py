"""Checks the `train` section against the model and the known training vocabulary.

The loop itself lives in ``flashc.train``; here every loss, optimizer, schedule
and setting is validated so that `flashc check` catches a typo in the train
section as early as one in the model.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flashc.build.loss_exprs import LossChecker
from flashc.build.values import _Abort
from flashc.diagnostics import Diagnostic, did_you_mean
from flashc.ir.dims import Sym, is_static
from flashc.ir.graph import Graph
from flashc.ir.train import Choice, LossTerm, Penalty, Phase, TrainConfig
from flashc.ir.types import TensorType
from flashc.ops.base import Param
from flashc.syntax import ast

if TYPE_CHECKING:
    from flashc.build.builder import Builder
    from flashc.build.scope import Scope

LR = Param(float, doc="learning rate")


@dataclass(frozen=True)
class Schema:
    """A trainable choice's name, its tensor arguments and its options."""

    name: str
    params: dict[str, Param]
    tensors: int = 0
    doc: str = ""


def _schemas(*items: Schema) -> dict[str, Schema]:
    return {s.name: s for s in items}


LOSSES = _schemas(
    Schema("cross_entropy", {"weight": Param("floats", None), "label_smoothing": Param(float, 0.0),
                             "ignore_index": Param(int, -100)}, 2, "logits vs class ids"),
    Schema("binary_cross_entropy", {"pos_weight": Param(float, None)}, 2, "logits vs 0/1 targets"),
    Schema("kl_div", {"form": Param(str, "gaussian", choices=("gaussian", "log_probs"))}, 2,
           "gaussian: KL(N(mu, exp(logvar)) || N(0, 1)); log_probs: KL(target || input)"),
    Schema("mse", {}, 2), Schema("mae", {}, 2), Schema("huber", {"delta": Param(float, 1.0)}, 2),
    Schema("hinge", {"margin": Param(float, 1.0)}, 2, "multi-class margin loss on logits"),
    Schema("contrastive", {"margin": Param(float, 1.0)}, 3, "embeddings a, b and 1 for same pairs"),
    Schema("dice", {"smooth": Param(float, 1.0)}, 2, "mask logits vs 0/1 masks"),
    Schema("perceptual", {"network": Param("name"), "weights": Param(str, None)}, 2,
           "distance between features of a frozen sub-network"),
)
OPTIMIZERS = _schemas(
    Schema("sgd", {"lr": LR, "momentum": Param(float, 0.0), "nesterov": Param(bool, False), "weight_decay": Param(float, 0.0)}),
    Schema("adam", {"lr": Param(float, 1e-3), "betas": Param("floats", (0.9, 0.999)), "eps": Param(float, 1e-8),
                    "weight_decay": Param(float, 0.0)}),
    Schema("adamw", {"lr": Param(float, 1e-3), "betas": Param("floats", (0.9, 0.999)), "eps": Param(float, 1e-8),
                     "weight_decay": Param(float, 0.01)}),
    Schema("rmsprop", {"lr": Param(float, 1e-2), "alpha": Param(float, 0.99), "momentum": Param(float, 0.0),
                       "eps": Param(float, 1e-8), "weight_decay": Param(float, 0.0)}),
    Schema("adagrad", {"lr": Param(float, 1e-2), "weight_decay": Param(float, 0.0)}),
)
SCHEDULES = _schemas(
    Schema("constant", {}),
    Schema("step", {"step_size": Param(int), "gamma": Param(float, 0.1)}),
    Schema("exponential", {"gamma": Param(float)}),
    Schema("cosine", {"t_max": Param(int, None), "min_lr": Param(float, 0.0)}),
    Schema("warmup_cosine", {"warmup": Param(int), "min_lr": Param(float, 0.0)}),
    Schema("reduce_on_plateau", {"factor": Param(float, 0.1), "patience": Param(int, 10), "monitor": Param("name", "val_loss")}),
)
ADVERSARIAL = _schemas(
    Schema("fgsm", {"epsilon": Param(float), "share": Param(float, 0.5)}),
    Schema("pgd", {"epsilon": Param(float), "steps": Param(int, 7), "alpha": Param(float, None), "share": Param(float, 0.5)}),
)
PENALTIES = _schemas(Schema("l1", {"strength": Param(float)}), Schema("l2", {"strength": Param(float)}))
EARLY_STOP = Schema("early_stop", {
    "monitor": Param("name", "val_loss"), "mode": Param(str, "min", choices=("min", "max")),
    "patience": Param(int, 5), "min_delta": Param(float, 0.0), "restore_best": Param(bool, False),
})
SETTINGS = ("optimizer", "schedule", "batch", "epochs", "early_stop", "adversarial", "clip_grad", "seed", "validation",
            "accumulate", "precision", "compile", "noise")
PRECISIONS = ("fp32", "bf16", "fp16")


def _rule(words: str, test: Any) -> tuple[str, Any]:
    return words, test


POSITIVE = _rule("> 0", lambda v: v > 0)
NON_NEGATIVE = _rule(">= 0", lambda v: v >= 0)
AT_LEAST_ONE = _rule(">= 1", lambda v: v >= 1)
SHARE = _rule("between 0 and 1", lambda v: 0 <= v <= 1)
# The range of each option, so `lr = -1` or `betas = (2, 3, 4)` fails at `check`, not inside torch
# (or worse, trains quietly backwards). Keys are option names, or (schema, option) where they differ.
RANGES: dict[Any, tuple[str, Any]] = {
    "lr": POSITIVE, "eps": POSITIVE, "gamma": POSITIVE, "epsilon": POSITIVE, "delta": POSITIVE,
    "pos_weight": POSITIVE, "momentum": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "min_lr": NON_NEGATIVE,
    "warmup": NON_NEGATIVE, "patience": NON_NEGATIVE, "min_delta": NON_NEGATIVE, "strength": NON_NEGATIVE,
    "margin": NON_NEGATIVE, "smooth": NON_NEGATIVE, "step_size": AT_LEAST_ONE, "t_max": AT_LEAST_ONE,
    "steps": AT_LEAST_ONE, "label_smoothing": SHARE, "share": SHARE, ("rmsprop", "alpha"): SHARE,
    ("pgd", "alpha"): POSITIVE, "factor": _rule("between 0 and 1 (exclusive)", lambda v: 0 < v < 1),
    "betas": _rule("two numbers from 0 up to (not including) 1",
                   lambda v: len(v) == 2 and all(0 <= x < 1 for x in v)),
    "weight": _rule("numbers >= 0 (one per class)", lambda v: all(x >= 0 for x in v)),
}


def _check_range(schema: Schema, key: str, value: Any, span: Any, b: Builder) -> None:
    """Non-finite numbers anywhere, and values outside the option's range, are errors at their argument."""
    numbers = value if isinstance(value, tuple) else (value,)
    if any(isinstance(x, float) and not math.isfinite(x) for x in numbers):
        raise b.fail(span, f"`{schema.name}` {key} must be a finite number, got {value!r}")
    rule = RANGES.get((schema.name, key)) or RANGES.get(key)
    if rule is not None and value is not None and not rule[1](value):
        raise b.fail(span, f"`{schema.name}` {key} must be {rule[0]}, got {value!r}")


def build_train(section: ast.Train, graph: Graph, scope: Scope, b: Builder) -> tuple[TrainConfig | None, list[Diagnostic]]:
    """Validate a train section; returns the config and any problems found."""
    before = len(b.diagnostics)
    targets: dict[str, Any] = {}
    found: dict[str, Any] = {"penalties": []}
    found["phases"] = []
    for stmt in section.body:
        if isinstance(stmt, ast.PhaseBlock):
            found["phases"].append(stmt)
            continue
        if isinstance(stmt, ast.Setting):
            found.setdefault("_attempted", set()).add(stmt.name)
        try:
            if isinstance(stmt, ast.Target):
                targets[stmt.name] = b.tensor_type(stmt.type, scope)
            elif isinstance(stmt, ast.Loss):
                if "loss" in found:
                    raise b.fail(stmt.span, "`loss` is given twice", "combine terms in one expression: `loss a + b`")
                found["loss"] = (stmt, None)
            elif isinstance(stmt, ast.Regularize):
                found["penalties"].append(_penalty(stmt, graph, scope, b))
            elif stmt.name not in SETTINGS:
                raise b.fail(stmt.span, f"unknown train setting `{stmt.name}`",
                             did_you_mean(stmt.name, SETTINGS + ("loss", "target", "regularize")))
            elif stmt.name in found:
                raise b.fail(stmt.span, f"`{stmt.name}` is given twice")
            elif len(stmt.args) > 1 and stmt.name not in ("early_stop", "noise"):
                raise b.fail(stmt.args[1].span, f"`{stmt.name}` takes one value")
            else:
                found[stmt.name] = _setting(stmt, scope, b, graph)
        except _Abort:
            continue  # already reported; check the next statement
    types = {n: v.type for n, v in graph.outputs} | {v.name: v.type for v in graph.inputs} | targets
    sizes = {str(d) for t in [v.type for v in graph.inputs] + list(targets.values())
             for d in t.shape if isinstance(d, Sym) and d.op == "name"}
    checker = LossChecker(types, sizes, LOSSES, _options, _check_call, scope, b)
    loss, phases = None, ()
    if found["phases"]:
        phases, loss = _phases(found, graph, checker, b)
    elif "loss" not in found:
        b.diagnostics.append(Diagnostic(section.span, "the train section has no `loss`"))
    else:
        try:
            loss = checker.loss(found["loss"][0].expr)
        except _Abort:
            loss = None  # already reported
    if not found["phases"] and "optimizer" not in found.get("_attempted", set()):
        b.diagnostics.append(Diagnostic(section.span, "the train section has no `optimizer`", "e.g. `optimizer sgd(lr = 0.1, momentum = 0.9)`"))
    if loss is not None:
        _check_monitors(found, loss, b)
    problems = b.diagnostics[before:]
    del b.diagnostics[before:]
    if problems:
        return None, problems
    if phases:
        found["optimizer"], found["schedule"] = phases[0].optimizer, phases[0].schedule
    config = TrainConfig(
        targets=tuple(targets.items()), loss=loss, optimizer=found["optimizer"], schedule=found.get("schedule"),
        batch=found.get("batch", 32), epochs=found.get("epochs", 10), early_stop=found.get("early_stop"),
        penalties=tuple(found["penalties"]), adversarial=found.get("adversarial"), clip_grad=found.get("clip_grad"),
        seed=found.get("seed", 0), settings={"validation": found.get("validation", 0.1)}, span=section.span,
        accumulate=found.get("accumulate", 1), precision=found.get("precision", "fp32"),
        compile=found.get("compile", False), noise=found.get("noise", ()), phases=phases,
    )
    return config, []


PHASE_STATEMENTS = ("loss", "optimizer", "schedule", "params")


def _phases(found: dict[str, Any], graph: Graph, checker: LossChecker, b: Builder) -> tuple[tuple[Phase, ...], LossTerm | None]:
    """`phase NAME { loss ...; optimizer ...; schedule ...; params "pattern", ... }` blocks, run in
    order at every step; the section's own loss is then the sum of theirs (val_loss)."""
    for key in ("loss", "optimizer", "schedule"):
        if key in found:
            stmt = found[key][0] if key == "loss" else found[key]
            raise_at = stmt.span
            b.diagnostics.append(Diagnostic(raise_at, f"with phases, `{key}` belongs inside each phase"))
            return (), None
    phases, seen = [], {}
    for block in found["phases"]:
        if block.name in seen:
            b.diagnostics.append(Diagnostic(block.name_span, f"phase `{block.name}` is given twice"))
            continue
        seen[block.name] = block
        try:
            phases.append(_phase(block, graph, checker, b))
        except _Abort:
            continue
    if len(phases) != len(found["phases"]):
        return (), None
    total = phases[0].loss
    for ph in phases[1:]:
        total = LossTerm("binop", name="+", children=(total, ph.loss), span=ph.span)
    return tuple(phases), total


def _phase(block: ast.PhaseBlock, graph: Graph, checker: LossChecker, b: Builder) -> Phase:
    parts: dict[str, Any] = {}
    for stmt in block.body:
        key = "loss" if isinstance(stmt, ast.Loss) else getattr(stmt, "name", None)
        if key not in PHASE_STATEMENTS or isinstance(stmt, (ast.Target, ast.Regularize, ast.PhaseBlock)):
            raise b.fail(stmt.span, f"a phase holds {', '.join(PHASE_STATEMENTS)}; this belongs in the train section",
                         did_you_mean(key, PHASE_STATEMENTS) if isinstance(key, str) else None)
        if key in parts:
            raise b.fail(stmt.span, f"`{key}` is given twice in phase `{block.name}`")
        if key == "loss":
            parts[key] = checker.loss(stmt.expr)
        elif key == "params":
            parts[key] = _phase_params(stmt, graph, b)
        else:
            if len(stmt.args) != 1:
                raise b.fail(stmt.span, f"`{key}` takes one value")
            parts[key] = _choice(stmt.args[0].value, OPTIMIZERS if key == "optimizer" else SCHEDULES, key,
                                 checker.scope, b)
    for key in ("loss", "optimizer"):
        if key not in parts:
            raise b.fail(block.span, f"phase `{block.name}` has no `{key}`")
    patterns, matched = parts.get("params", ((), ()))
    return Phase(block.name, parts["loss"], parts["optimizer"], parts.get("schedule"), patterns, matched, block.span)


def _phase_params(stmt: ast.Setting, graph: Graph, b: Builder) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`params "disc.*", "head.*"`: the trainable weights of a phase, by path pattern."""
    patterns = []
    for arg in stmt.args:
        if arg.name is not None or not isinstance(arg.value, ast.String):
            raise b.fail(arg.span, "`params` takes path patterns in quotes: `params \"disc.*\"`")
        patterns.append(arg.value.value)
    trainable = [p for p in graph.weights if not graph.weights[p].spec.buffer]
    matched = tuple(p for p in trainable if any(fnmatch.fnmatchcase(p, pat) for pat in patterns))
    if not matched:
        raise b.fail(stmt.span, f"{', '.join(repr(p) for p in patterns)} matches no parameter",
                     f"parameters look like {trainable[0] if trainable else 'linear.weight'!r}")
    return tuple(patterns), matched


def _fits(a: tuple, b: tuple) -> bool:
    """Two shapes that can be equal: same rank, and equal wherever both sizes are known."""
    return len(a) == len(b) and all(not (is_static(x) and is_static(y)) or x == y for x, y in zip(a, b))


def _check_call(term: LossTerm, shown: list[str], types: list[TensorType], b: Builder) -> None:
    """A target that can never match its prediction is a `check` error, not a failure at the first step."""
    if term.name in ("perceptual", "contrastive"):
        return
    (pred, target), (p, t) = shown[:2], types[:2]  # "`name`", or "the expression" for any other argument
    if term.name in ("cross_entropy", "hinge"):
        if p.rank < 1 or not _fits(p.shape[:-1], t.shape):
            b.diagnostics.append(Diagnostic(term.span, f"`{term.name}` compares logits {pred} {p} with class ids "
                                            f"{target} {t}: the ids need the logits' shape without its last axis "
                                            f"(the classes), {p.with_shape(p.shape[:-1]).shape_str()}"))
        elif t.is_float:
            hint = f"declare `target {target.strip('`')}: int64{t.shape_str()}`" if target.startswith("`") else None
            b.diagnostics.append(Diagnostic(term.span, f"`{term.name}` takes class ids, but {target} is {t}", hint))
        weight = dict(term.options).get("weight")
        classes = p.shape[-1] if p.rank else None
        if weight is not None and is_static(classes) and len(weight) != classes:
            b.diagnostics.append(Diagnostic(term.span, f"`{term.name}` weight has {len(weight)} values for "
                                            f"{classes} classes"))
    elif not _fits(p.shape, t.shape):
        b.diagnostics.append(Diagnostic(term.span, f"`{term.name}` compares {pred} {p} with {target} {t}: "
                                        "their shapes cannot match"))


def _metrics(loss: LossTerm) -> list[str]:
    """The metric names a run records, as `early_stop monitor = ...` may name them."""
    def classifies(t: LossTerm) -> bool:
        return (t.kind == "call" and t.name in ("cross_entropy", "hinge")) or any(classifies(c) for c in t.children)

    return ["train_loss", "val_loss"] + (["val_accuracy"] if classifies(loss) else [])


def _check_monitors(found: dict[str, Any], loss: LossTerm, b: Builder) -> None:
    known = _metrics(loss)
    for key in ("early_stop", "schedule"):
        choice = found.get(key)
        monitor = choice.kwargs.get("monitor") if isinstance(choice, Choice) else None
        if monitor is not None and monitor not in known:
            b.diagnostics.append(Diagnostic(choice.span, f"`{key}` monitors `{monitor}`, which this run does not record",
                                            did_you_mean(monitor, known) or f"metrics: {', '.join(known)}"))


def _choice(e: Any, table: dict[str, Schema], what: str, scope: Scope, b: Builder) -> Choice:
    """`adamw(lr = 3e-4)` or a bare `adamw` checked against its schema."""
    call = e if isinstance(e, ast.Call) else ast.Call(e.span, e, ())
    if not isinstance(call.func, ast.Name):
        raise b.fail(e.span, f"expected a {what} name")
    name = call.func.id
    if name not in table:
        raise b.fail(call.func.span, f"unknown {what} `{name}`", did_you_mean(name, table) or f"known: {', '.join(table)}")
    return Choice(name, tuple(_options(table[name], call.args, scope, b, call.span).items()), call.span)


def _options(schema: Schema, args: tuple, scope: Scope, b: Builder, span: Any) -> dict[str, Any]:
    given: dict[str, Any] = {}
    order = list(schema.params)
    for i, arg in enumerate(args):
        key = arg.name
        if key is None:
            if isinstance(arg.value, ast.Name) and schema.params.get(arg.value.id, Param(int)).kind is bool:
                given[arg.value.id] = True
                continue
            if i >= len(order):
                raise b.fail(arg.span, f"`{schema.name}` takes at most {len(order)} argument(s)")
            key = order[i]
        if key not in schema.params:
            raise b.fail(arg.span, f"`{schema.name}` has no option `{key}`", did_you_mean(key, schema.params))
        param = schema.params[key]
        bare = isinstance(arg.value, ast.Name) and not b.defined(arg.value.id, scope)
        if (param.kind == "name" or param.kind is str) and bare:
            value = arg.value.id
        else:
            value = b.eval(arg.value, scope)
        given[key] = b.check_param(schema, key, (value, arg.span))
        _check_range(schema, key, given[key], arg.span, b)
    for key, param in schema.params.items():
        if key not in given:
            if param.required:
                raise b.fail(span, f"`{schema.name}` needs `{key}`")
            given[key] = param.default
    return given


def _setting(stmt: ast.Setting, scope: Scope, b: Builder, graph: Graph) -> Any:
    first = stmt.args[0]
    if stmt.name == "optimizer":
        return _choice(first.value, OPTIMIZERS, "optimizer", scope, b)
    if stmt.name == "schedule":
        return _choice(first.value, SCHEDULES, "schedule", scope, b)
    if stmt.name == "adversarial":
        return _choice(first.value, ADVERSARIAL, "adversarial attack", scope, b)
    if stmt.name == "early_stop":
        return Choice("early_stop", tuple(_options(EARLY_STOP, stmt.args, scope, b, stmt.span).items()), stmt.span)
    if stmt.name == "batch" and isinstance(first.value, ast.Name) and first.value.id == "full":
        return "full"
    if stmt.name in ("precision", "noise"):
        return step_setting(stmt, graph, b)
    value = b.eval(first.value, scope)
    if stmt.name == "compile":
        if not isinstance(value, bool):
            raise b.fail(first.span, f"`compile` is true or false, got {value!r}")
        return value
    if stmt.name in ("batch", "epochs", "seed", "accumulate"):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if stmt.name == "seed" else 1):
            hint = "`batch full` (batch GD), `batch N` (mini-batch) or `batch 1` (stochastic)" if stmt.name == "batch" else None
            raise b.fail(first.span, f"`{stmt.name}` must be a whole number >= 1, got {value!r}", hint)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise b.fail(first.span, f"`{stmt.name}` must be a positive finite number, got {value!r}")
    if stmt.name == "validation" and not value < 1:
        raise b.fail(first.span, f"`validation` is the held-out share, between 0 and 1; got {value!r}")
    return float(value)


def step_setting(stmt: ast.Setting, graph: Graph, b: Builder) -> Any:
    """`precision bf16` (a bare name of PRECISIONS) and `noise z, w` (float inputs of the model)."""
    names = []
    for arg in stmt.args:
        if arg.name is not None or not isinstance(arg.value, ast.Name):
            what = "fp32, bf16 or fp16" if stmt.name == "precision" else "names of float inputs"
            raise b.fail(arg.span, f"`{stmt.name}` takes {what}")
        names.append(arg.value)
    if stmt.name == "precision":
        word = names[0].id
        if word not in PRECISIONS:
            raise b.fail(names[0].span, f"unknown precision `{word}`",
                         did_you_mean(word, PRECISIONS) or f"known: {', '.join(PRECISIONS)}")
        return word
    inputs = {v.name: v.type for v in graph.inputs}
    for name in names:
        if name.id not in inputs:
            raise b.fail(name.span, f"`noise` fills model inputs; `{name.id}` is not one",
                         did_you_mean(name.id, inputs) or f"inputs: {', '.join(inputs)}")
        if not inputs[name.id].is_float:
            raise b.fail(name.span, f"`noise` draws floats; `{name.id}` is {inputs[name.id]}")
    return tuple(n.id for n in names)


def _penalty(stmt: ast.Regularize, graph: Graph, scope: Scope, b: Builder) -> Penalty:
    choice = _choice(stmt.expr, PENALTIES, "penalty", scope, b)
    matched = tuple(p for p in graph.weights if not graph.weights[p].spec.buffer and any(fnmatch.fnmatchcase(p, pat) for pat in stmt.patterns))
    if not matched:
        raise b.fail(stmt.span, f"{', '.join(repr(p) for p in stmt.patterns)} matches no parameter",
                     f"parameters look like {next(iter(graph.weights), 'linear.weight')!r}")
    return Penalty(choice.name, choice.kwargs["strength"], stmt.patterns, matched, stmt.span)
