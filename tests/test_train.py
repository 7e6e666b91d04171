"""Training from a spec's `train` section: gradient-descent forms, optimizers, schedules,
losses, penalties, dropout / batchnorm modes, tied weights, adversarial examples, early
stopping, the run directory, exact resume, failure on NaN, data checks and formats, the CLI."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from safetensors.numpy import save_file as save_numpy

import flashc
from flashc.cli import main as cli
from flashc.train.data import load_data
from flashc.train.dataset import split
from flashc.train.loop import Trainer
from flashc.train.losses import evaluate

MLP = """
model Net(features = 4, hidden = 16, classes = 3, p = 0.0) {
  input x: float32[B, features]
  output logits = x |> linear(hidden) |> relu |> dropout(p) |> linear(classes)
}
"""
CLASSIFY = "target label: int64[B]\nloss cross_entropy(logits, label)\n"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train faster (and reproducibly) on one thread of a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_spec(train: str, model: str = MLP, **params) -> flashc.Spec:
    name = model.split("model ", 1)[1].split("(", 1)[0].strip()
    return flashc.loads(f"{model}\ntrain {name} {{\n{train}\n}}\n", **params)


def classifier(*lines: str, **params) -> flashc.Spec:
    return make_spec(CLASSIFY + "\n".join(lines), **params)


def trainer(spec: flashc.Spec, data) -> Trainer:
    """A Trainer on the same splits and initial weights that `fit` would use."""
    cfg = spec.train
    splits = split(load_data(data, spec.graph), cfg.settings["validation"], 0.1, cfg.seed)
    return Trainer(spec, splits, None, "cpu", True)


def tiny(n: int = 50, features: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    x = (rng.normal(0, 1, (n, features)) + label[:, None]).astype(np.float32)
    return {"x": x, "label": label.astype(np.int64)}


def state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


# --- batch, mini-batch and stochastic gradient descent -----------------------------------

@pytest.mark.parametrize("batch, validation", [("full", None), ("7", None), ("1", None), ("7", "0.2"), ("full", "0.3")])
def test_steps_per_epoch(batch, validation):
    n, data = 50, tiny(50)
    val = float(validation or 0.1)
    n_train = n - round(n * 0.1) - round(n * val)  # split(): test share 0.1, validation share from the spec
    spec = classifier("optimizer sgd(lr = 0.01)", f"batch {batch}", "epochs 2",
                      f"validation {validation}" if validation else "")
    result = spec.fit(data, quiet=True)
    assert len(split(load_data(data, spec.graph), val, 0.1, spec.train.seed).train) == n_train
    expected = 1 if batch == "full" else math.ceil(n_train / int(batch))
    assert [h["steps"] for h in result.history] == [expected, expected]


def test_stochastic_gradient_descent_takes_one_sample_per_step():
    n_train = 50 - 5 - 5
    result = classifier("optimizer sgd(lr = 0.01)", "batch 1", "epochs 1").fit(tiny(50), quiet=True)
    assert result.history[0]["steps"] == n_train


# --- optimizers ----------------------------------------------------------------------------

OPTIMIZERS = [
    ("sgd(lr = 0.05)", torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
    ("sgd(lr = 0.05, momentum = 0.9)", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
    ("sgd(lr = 0.05, momentum = 0.9, nesterov = true)", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adam(lr = 0.01, betas = (0.8, 0.99))", torch.optim.Adam, {"betas": (0.8, 0.99)}),
    ("adamw(lr = 0.01, weight_decay = 0.05)", torch.optim.AdamW, {"weight_decay": 0.05}),
    ("rmsprop(lr = 0.005, alpha = 0.9)", torch.optim.RMSprop, {"alpha": 0.9}),
    ("adagrad(lr = 0.1)", torch.optim.Adagrad, {"lr": 0.1}),
]


@pytest.mark.parametrize("text, cls, options", OPTIMIZERS, ids=[o[0].split("(")[0] + str(i) for i, o in enumerate(OPTIMIZERS)])
def test_optimizer_reduces_the_loss(text, cls, options):
    spec = classifier(f"optimizer {text}", "batch 32", "epochs 4")
    t = trainer(spec, "blobs")
    assert type(t.optimizer) is cls
    group = t.optimizer.param_groups[0]
    assert {k: (tuple(group[k]) if isinstance(group[k], tuple) else group[k]) for k in options} == options
    before = t.measure(t.splits.val, "val")["val_loss"]
    result = spec.fit("blobs", quiet=True)
    losses = [h["train_loss"] for h in result.history]
    assert result.history[-1]["val_loss"] < 0.5 * before
    assert losses[-1] < losses[0]
    assert result.test["test_accuracy"] > 0.9


# --- learning-rate schedules -----------------------------------------------------------------

def _torch_lrs(make, epochs: int, steps: int, lr: float, history, per_step=False, metric=False) -> list[float]:
    """The lr each epoch of `fit` reports, replayed with torch's own scheduler."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt)
    out = []
    for e in range(epochs):
        if per_step:
            for _ in range(steps):
                opt.step()
                sched.step()
        out.append(opt.param_groups[0]["lr"])
        if metric:
            sched.step(history[e]["val_loss"])
        elif not per_step:
            opt.step()
            sched.step()
    return out


S = torch.optim.lr_scheduler
SCHEDULES = [
    ("step(step_size = 2, gamma = 0.5)", lambda o: S.StepLR(o, step_size=2, gamma=0.5)),
    ("exponential(gamma = 0.7)", lambda o: S.ExponentialLR(o, gamma=0.7)),
    ("cosine", lambda o: S.CosineAnnealingLR(o, T_max=6)),
    ("cosine(t_max = 4, min_lr = 0.01)", lambda o: S.CosineAnnealingLR(o, T_max=4, eta_min=0.01)),
    ("warmup_cosine(warmup = 8, min_lr = 0.001)", lambda o: S.SequentialLR(o, [
        S.LinearLR(o, start_factor=1 / 8, end_factor=1.0, total_iters=7),
        S.CosineAnnealingLR(o, T_max=6 * 5 - 8, eta_min=0.001)], milestones=[8])),
]


@pytest.mark.parametrize("text, make", SCHEDULES, ids=[s[0].split("(")[0] + str(i) for i, s in enumerate(SCHEDULES)])
def test_schedule_matches_torch(text, make):
    spec = classifier("optimizer sgd(lr = 0.1, momentum = 0.9)", f"schedule {text}", "batch 96", "epochs 6")
    result = spec.fit("blobs", quiet=True)
    steps = result.history[0]["steps"]
    assert steps == 5  # 480 training rows of blobs in batches of 96
    got = [h["lr"] for h in result.history]
    want = _torch_lrs(make, 6, steps, 0.1, result.history, per_step=text.startswith("warmup"))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert len({round(v, 12) for v in got}) > 2


def test_warmup_cosine_counts_warmup_in_steps():
    spec = classifier("optimizer sgd(lr = 0.2)", "schedule warmup_cosine(warmup = 4)", "batch 96", "epochs 3")
    lrs = [h["lr"] for h in spec.fit("blobs", quiet=True).history]
    # after 5 steps (1 warmup step into the cosine part of 15 - 4 = 11 steps)
    assert lrs[0] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 1 / 11)))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_reduce_on_plateau_matches_torch():
    spec = classifier("optimizer sgd(lr = 1e-6)", "schedule reduce_on_plateau(factor = 0.5, patience = 0)",
                      "batch full", "epochs 5")
    result = spec.fit("blobs", quiet=True)
    got = [h["lr"] for h in result.history]
    want = _torch_lrs(lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=0), 5, 1, 1e-6, result.history, metric=True)
    assert got == pytest.approx(want, rel=1e-12)
    assert got[-1] < got[0]


def test_clip_grad_bounds_the_update():
    init = state(classifier("optimizer sgd(lr = 1.0)").to_torch(seed=0))

    def update_norm(extra: str) -> float:
        spec = classifier("optimizer sgd(lr = 1.0)", "batch full", "epochs 1", extra)
        after = state(spec.fit("blobs", quiet=True).model)
        return math.sqrt(sum(float(((after[k] - init[k]) ** 2).sum()) for k in init))

    assert update_norm("") > 0.01
    assert update_norm("clip_grad 0.001") == pytest.approx(0.001, rel=1e-3)


# --- losses ------------------------------------------------------------------------------------

def _logits(*shape):
    return lambda g: torch.from_numpy(g.normal(0, 2, shape).astype(np.float32))


def _ints(high, *shape):
    return lambda g: torch.from_numpy(g.integers(0, high, shape))


def _binary(*shape):
    return lambda g: torch.from_numpy((g.random(shape) < 0.4).astype(np.float32))


def _kl_closed_form(mu, logvar):
    return (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1).mean()


def _contrastive(a, b, same, margin):
    d = ((a - b) ** 2).sum(1).sqrt()
    return 0.5 * (same * d ** 2 + (1 - same) * torch.clamp(margin - d, min=0) ** 2).mean()


def _dice(logits, mask, smooth):
    p = torch.sigmoid(logits).flatten(1)
    m = mask.flatten(1)
    return 1 - ((2 * (p * m).sum(1) + smooth) / (p.sum(1) + m.sum(1) + smooth)).mean()


# (loss text, the tensors it reads: name -> (type, generator), reference)
LOSSES = [
    ("cross_entropy(s, k, weight = (1.0, 2.0, 0.5), label_smoothing = 0.1)",
     {"s": ("float32[B, 3]", _logits(6, 3)), "k": ("int64[B]", _ints(3, 6))},
     lambda t: F.cross_entropy(t["s"], t["k"], weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1)),
    ("cross_entropy(s, k)",  # sequences: [B, T, C] against [B, T]
     {"s": ("float32[B, T, 5]", _logits(3, 4, 5)), "k": ("int64[B, T]", _ints(5, 3, 4))},
     lambda t: F.cross_entropy(t["s"].transpose(1, 2), t["k"])),
    ("binary_cross_entropy(s, m, pos_weight = 3.0)",
     {"s": ("float32[B, 5]", _logits(6, 5)), "m": ("float32[B, 5]", _binary(6, 5))},
     lambda t: F.binary_cross_entropy_with_logits(t["s"], t["m"], pos_weight=torch.tensor(3.0))),
    ("kl_div(s, v)",
     {"s": ("float32[B, 5]", _logits(6, 5)), "v": ("float32[B, 5]", _logits(6, 5))},
     lambda t: _kl_closed_form(t["s"], t["v"])),
    ("kl_div(s, v)",  # the same, as torch.distributions computes it
     {"s": ("float32[B, 5]", _logits(6, 5)), "v": ("float32[B, 5]", _logits(6, 5))},
     lambda t: torch.distributions.kl_divergence(torch.distributions.Normal(t["s"], (0.5 * t["v"]).exp()),
                                                 torch.distributions.Normal(0.0, 1.0)).sum(1).mean()),
    ('kl_div(s, v, form = "log_probs")',
     {"s": ("float32[B, 5]", lambda g: F.log_softmax(_logits(6, 5)(g), -1)),
      "v": ("float32[B, 5]", lambda g: F.softmax(_logits(6, 5)(g), -1))},
     lambda t: F.kl_div(t["s"], t["v"], reduction="batchmean")),
    ("mse(s, v)", {"s": ("float32[B, 5]", _logits(6, 5)), "v": ("float32[B, 5]", _logits(6, 5))},
     lambda t: F.mse_loss(t["s"], t["v"])),
    ("mae(s, v)", {"s": ("float32[B, 5]", _logits(6, 5)), "v": ("float32[B, 5]", _logits(6, 5))},
     lambda t: F.l1_loss(t["s"], t["v"])),
    ("huber(s, v, delta = 0.5)", {"s": ("float32[B, 5]", _logits(6, 5)), "v": ("float32[B, 5]", _logits(6, 5))},
     lambda t: F.huber_loss(t["s"], t["v"], delta=0.5)),
    ("hinge(s, k, margin = 0.7)", {"s": ("float32[B, 4]", _logits(8, 4)), "k": ("int64[B]", _ints(4, 8))},
     lambda t: F.multi_margin_loss(t["s"], t["k"], margin=0.7)),
    ("contrastive(s, v, same, margin = 2.0)",
     {"s": ("float32[B, 3]", _logits(8, 3)), "v": ("float32[B, 3]", _logits(8, 3)), "same": ("float32[B]", _binary(8))},
     lambda t: _contrastive(t["s"], t["v"], t["same"], 2.0)),
    ("dice(s, m, smooth = 1.0)",
     {"s": ("float32[B, 1, 4, 4]", _logits(3, 1, 4, 4)), "m": ("float32[B, 1, 4, 4]", _binary(3, 1, 4, 4))},
     lambda t: _dice(t["s"], t["m"], 1.0)),
    ("mse(s, v) + 0.5 * mae(s, v)", {"s": ("float32[B, 5]", _logits(6, 5)), "v": ("float32[B, 5]", _logits(6, 5))},
     lambda t: F.mse_loss(t["s"], t["v"]) + 0.5 * F.l1_loss(t["s"], t["v"])),
    ("-(2 * mae(s, v) - mse(s, v) / 4)", {"s": ("float32[B, 5]", _logits(6, 5)), "v": ("float32[B, 5]", _logits(6, 5))},
     lambda t: -(2 * F.l1_loss(t["s"], t["v"]) - F.mse_loss(t["s"], t["v"]) / 4)),
]


@pytest.mark.parametrize("text, tensors, reference", LOSSES, ids=[f"{i}-{c[0].split('(')[0]}" for i, c in enumerate(LOSSES)])
def test_loss_matches_reference(text, tensors, reference):
    (first, (first_type, _)), *rest = tensors.items()
    model = f"model L() {{\n  input {first}_in: {first_type}\n  output {first} = {first}_in |> identity\n}}\n"
    targets = "\n".join(f"target {name}: {t}" for name, (t, _) in rest)
    spec = make_spec(f"{targets}\nloss {text}\noptimizer sgd(lr = 0.1)", model=model)
    g = np.random.default_rng(len(text))
    values = {name: make(g) for name, (_, make) in tensors.items()}
    values[first].requires_grad_(True)
    got = evaluate(spec.train.loss, values)
    want = reference(values)
    assert got.shape == ()
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-6)
    got.backward()  # differentiable in the model's output
    assert values[first].grad is not None and torch.isfinite(values[first].grad).all()


PERCEPTUAL = """
model AE() {
  input image: float32[B, 16]
  output recon = image |> linear(4) |> relu |> linear(16)
}

model Features() {
  input x: float32[B, 16]
  output f = x |> linear(8) |> tanh
}

train AE {
  loss       perceptual(recon, image, network = Features, weights = "features.safetensors") + mse(recon, image)
  optimizer  adam(lr = 0.01)
  batch      32
  epochs     3
}
"""


def test_perceptual_loss_compares_frozen_features(tmp_path):
    path = tmp_path / "ae.flash"
    path.write_text(PERCEPTUAL)
    features = flashc.load_model(path, "Features")
    save_numpy({k: v.numpy() for k, v in features.to_torch(seed=5).state_dict().items()},
               str(tmp_path / "features.safetensors"))
    net = features.to_torch(weights=tmp_path / "features.safetensors").eval()
    spec = flashc.load(path)
    x = np.random.default_rng(0).random((100, 16), dtype=np.float32)
    t = trainer(spec, {"image": x})
    env = t.forward({"image": torch.from_numpy(x[:8])})
    got = evaluate(spec.train.loss, env, t.extra_losses)
    with torch.no_grad():
        want = F.mse_loss(net(env["recon"]), net(env["image"])) + F.mse_loss(env["recon"], env["image"])
    torch.testing.assert_close(got.detach(), want)
    result = spec.fit({"image": x}, quiet=True)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert set(dict(result.model.named_parameters())) == set(spec.graph.weights)  # the feature net is not trained


# --- L1 / L2 penalties ------------------------------------------------------------------------

def test_penalties_add_their_gradient_to_matching_parameters_only():
    spec = classifier("optimizer sgd(lr = 0.1)", 'regularize l2(0.01) on "linear.weight"',
                      'regularize l1(0.02) on "linear_1.weight"')
    assert [p.parameters for p in spec.train.penalties] == [("linear.weight",), ("linear_1.weight",)]
    t = trainer(spec, "blobs")
    env = t.tensors(t.splits.train, np.arange(32))

    def grads(with_penalty: bool) -> dict[str, torch.Tensor]:
        t.model.zero_grad()
        loss, _ = t.loss(env)
        (t.penalty(loss) if with_penalty else loss).backward()
        return {n: p.grad.clone() for n, p in t.model.named_parameters()}

    t.model.eval()  # no dropout in this net, but keep the two passes identical
    plain, penalized = grads(False), grads(True)
    params = dict(t.model.named_parameters())
    expected = {"linear.weight": 2 * 0.01 * params["linear.weight"].detach(),
                "linear_1.weight": 0.02 * params["linear_1.weight"].detach().sign()}
    for name in plain:
        extra = expected.get(name, torch.zeros_like(plain[name]))
        torch.testing.assert_close(penalized[name] - plain[name], extra, rtol=1e-5, atol=1e-7)


def test_penalty_patterns_select_parameters():
    spec = classifier("optimizer sgd(lr = 0.1)", 'regularize l2(1e-4) on "*.weight"', 'regularize l1(1e-3) on "linear_1.*"')
    assert [p.parameters for p in spec.train.penalties] == [("linear.weight", "linear_1.weight"),
                                                           ("linear_1.weight", "linear_1.bias")]


# --- dropout and batchnorm modes ------------------------------------------------------------

def test_dropout_is_inverted_in_training_and_identity_at_eval():
    model = flashc.loads("model D() { input x: float32[B, 4000]\n output y = x |> dropout(0.3) }").to_torch()
    x = torch.rand(2, 4000) + 0.5
    torch.manual_seed(0)
    y = model.train()(x)
    dropped = y == 0
    assert 0.27 < dropped.float().mean().item() < 0.33
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.7)
    assert torch.equal(model.eval()(x), x)


BATCHNORM = """
model BN(classes = 3) {
  input x: float32[B, 4]
  output logits = x |> linear(8) |> batchnorm |> relu |> linear(classes)
}
"""


def test_batchnorm_running_statistics():
    spec = make_spec(CLASSIFY + "optimizer adam(lr = 0.01)\nbatch 64\nepochs 2", model=BATCHNORM)
    result = spec.fit("blobs", quiet=True)
    model = result.model
    bn = model.batchnorm
    assert int(bn.num_batches_tracked) == sum(h["steps"] for h in result.history) == 16
    assert not torch.allclose(bn.running_mean, torch.zeros(8))
    assert not torch.allclose(bn.running_var, torch.ones(8))
    x = torch.from_numpy(load_data("blobs", spec.graph).arrays["x"][:20])
    model.eval()
    with torch.no_grad():
        h = model.linear(x)
        expected = model.linear_1(torch.relu(
            (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias))
        first, second = model(x), model(x[:5])
    torch.testing.assert_close(first, expected)
    assert torch.equal(first[:5], second)  # eval mode: each row independent of the batch
    before = bn.running_mean.clone()
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x[:5]), first[:5])  # batch statistics in training
    assert not torch.equal(bn.running_mean, before)


# --- tied weights ----------------------------------------------------------------------------

TIED = """
model Tied(vocab = 11, d = 8) {
  input tokens: int64[B, T]
  wte = embedding(vocab, d)
  output logits = wte(tokens) |> layernorm |> linear(vocab, bias = false, weight = wte.weight)
}
"""


def test_tied_weights_stay_one_tensor(tmp_path):
    g = np.random.default_rng(0)
    tokens = g.integers(0, 11, (64, 6))
    data = {"tokens": tokens, "targets": (tokens + 1) % 11}
    spec = make_spec("target targets: int64[B, T]\nloss cross_entropy(logits, targets)\noptimizer adam(lr = 0.02)\n"
                     "batch 16\nepochs 3\nearly_stop patience = 5, restore_best", model=TIED)
    init = spec.to_torch(seed=0).wte.weight.detach().clone()
    result = spec.fit(data, tmp_path, quiet=True)
    model = result.model
    assert model.linear.weight is model.wte.weight
    assert not torch.equal(model.wte.weight.detach(), init)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    saved = load_file(tmp_path / "best.safetensors")
    assert "wte.weight" in saved and "linear.weight" not in saved  # each tensor once
    np.testing.assert_array_equal(saved["wte.weight"], model.linear.weight.detach().numpy())


# --- adversarial training ------------------------------------------------------------------------

@pytest.mark.parametrize("attack", ["fgsm(epsilon = 0.1, share = 0.5)", "pgd(epsilon = 0.1, steps = 3, share = 0.5)"])
def test_adversarial_examples_stay_within_epsilon(attack):
    spec = classifier("optimizer adam(lr = 0.01)", f"adversarial {attack}", "batch 32", "epochs 3")
    t = trainer(spec, "blobs")
    env = t.tensors(t.splits.train, np.arange(32))
    adv = t.adversarial(env)
    diff = (adv["x"] - env["x"]).abs()
    assert diff[:16].max().item() <= 0.1 + 1e-6
    assert diff[:16].max().item() > 0.05
    if attack.startswith("fgsm"):  # one signed step of exactly epsilon
        torch.testing.assert_close(diff[:16], torch.full_like(diff[:16], 0.1))
    assert torch.equal(adv["x"][16:], env["x"][16:])
    assert torch.equal(adv["label"], env["label"])
    with torch.no_grad():
        t.model.eval()
        clean, _ = t.loss({k: v[:16] for k, v in env.items()})
        attacked, _ = t.loss({k: v[:16] for k, v in adv.items()})
    assert attacked > clean
    result = spec.fit("blobs", quiet=True)
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert result.test["test_accuracy"] > 0.9


# --- early stopping ------------------------------------------------------------------------------

@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_keeps_and_restores_the_best(tmp_path, restore):
    lines = ["optimizer sgd(lr = 0.05, momentum = 0.9)", "batch 32", "epochs 20",
             "early_stop monitor = val_loss, patience = 2, min_delta = 1e9" + (", restore_best" if restore else "")]
    spec = classifier(*lines, p=0.2)
    result = spec.fit("blobs", tmp_path, quiet=True)
    assert len(result.history) == 3 and result.best_epoch == 1
    assert not result.failed
    assert "early stop at epoch 3" in result.stop_reason and "val_loss did not improve for 2 epochs" in result.stop_reason
    best = load_file(tmp_path / "best.safetensors")
    last = load_file(tmp_path / "last.safetensors")
    after_one = state(classifier(*lines, p=0.2).fit("blobs", epochs=1, quiet=True).model)
    same_weights(best, after_one)  # best.safetensors = the weights at best_epoch
    same_weights(state(result.model), best if restore else last)
    assert not np.array_equal(best["linear.weight"], last["linear.weight"])
    assert json.loads((tmp_path / "summary.json").read_text())["best_epoch"] == 1


def test_early_stopping_on_a_maximized_metric():
    spec = classifier("optimizer sgd(lr = 1e-7)", "batch full", "epochs 20",
                      "early_stop monitor = val_accuracy, mode = max, patience = 3")
    result = spec.fit("blobs", quiet=True)
    assert len(result.history) == 4 and result.best_epoch == 1
    assert "val_accuracy did not improve for 3 epochs" in result.stop_reason


# --- the run directory ------------------------------------------------------------------------------

def test_run_directory(tmp_path):
    spec = classifier("optimizer adam(lr = 0.01)", "batch 64", "epochs 3", p=0.1)
    result = spec.fit("blobs", tmp_path, quiet=True)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    assert set(result.history[0]) == {"epoch", "steps", "lr", "train_loss", "val_loss", "val_accuracy"}
    with (tmp_path / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx([h["val_loss"] for h in result.history])
    png = (tmp_path / "curve.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "curve.png").ndim == 3
    for tag in ("best", "last"):
        weights = load_file(tmp_path / f"{tag}.safetensors")  # safetensors alone reads them
        assert set(weights) == set(spec.graph.weights)
        assert load_file(tmp_path / f"{tag}.state.safetensors")
        info = json.loads((tmp_path / f"{tag}.json").read_text())
        assert info["epoch"] == (3 if tag == "last" else result.best_epoch)
    same_weights(load_file(tmp_path / "last.safetensors"), state(result.model))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stop_reason"] == result.stop_reason == "finished 3 epochs"
    assert summary["test"] == pytest.approx(result.test) and summary["epochs_run"] == 3
    assert not summary["failed"]


# --- exact resume ---------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, schedule", [
    ("adam(lr = 0.01)", "step(step_size = 1, gamma = 0.8)"),
    ("sgd(lr = 0.05, momentum = 0.9, nesterov = true)", "warmup_cosine(warmup = 7)"),  # per-step LambdaLR
    ("rmsprop(lr = 0.005)", "reduce_on_plateau(factor = 0.5, patience = 0)"),
])
def test_resume_gives_identical_weights(tmp_path, optimizer, schedule):
    lines = (f"optimizer {optimizer}", f"schedule {schedule}", "batch 50", "epochs 4",
             "early_stop patience = 3, restore_best")
    straight = classifier(*lines, p=0.3).fit("blobs", tmp_path / "a", quiet=True)
    classifier(*lines, p=0.3).fit("blobs", tmp_path / "b", epochs=2, quiet=True)
    resumed = classifier(*lines, p=0.3).fit("blobs", tmp_path / "b", epochs=4, resume=True, quiet=True)
    same_weights(state(straight.model), state(resumed.model))
    same_weights(load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors"))
    assert resumed.history == straight.history
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 4


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(flashc.FlashError, match="nothing to resume"):
        classifier("optimizer sgd(lr = 0.1)").fit("blobs", tmp_path, resume=True, quiet=True)


# --- failure on a non-finite loss ---------------------------------------------------------------------

def test_infinite_data_is_refused_before_the_run(tmp_path):
    data = tiny(50)
    data["x"][:, 0] = np.inf  # issue 10: refused up front, naming the array and the row
    with pytest.raises(flashc.FlashError, match=r"data array `x`, row 0: inf at index \[0, 0\] is not a finite number"):
        classifier("optimizer sgd(lr = 0.1)", "epochs 3").fit(data, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


REGRESSION = """
model Reg() {
  input x: float32[B, 4]
  output y = x |> linear(1)
}
"""


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # lr far above 2 / the curvature: the error grows ~20x a step until the loss overflows
    # at a step inside an epoch, after epochs whose weights were still finite.
    g = np.random.default_rng(0)
    x = g.normal(0, 3, (100, 4)).astype(np.float32)
    data = {"x": x, "t": x.sum(1, keepdims=True)}
    spec = make_spec("target t: float32[B, 1]\nloss mse(y, t)\noptimizer sgd(lr = 0.5)\nbatch 40\nepochs 50",
                     model=REGRESSION)
    result = spec.fit(data, tmp_path, quiet=True)
    assert result.failed
    assert "the loss became" in result.stop_reason and "kept the last good checkpoint" in result.stop_reason
    epochs = len(result.history)
    assert 1 <= epochs < 50
    assert all(math.isfinite(h["val_loss"]) for h in result.history)
    last = load_file(tmp_path / "last.safetensors")
    assert all(np.isfinite(v).all() for v in last.values())
    assert json.loads((tmp_path / "last.json").read_text())["epoch"] == epochs


# --- data checks and formats -----------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(x=d["x"][:, :3]), ["`x`", "[50, 3]", "float32[B, 4]"]),
    (lambda d: d.update(x=d["x"][:, :, None]), ["`x`", "[50, 4, 1]", "float32[B, 4]"]),
    (lambda d: d.update(label=d["label"][:, None]), ["`label`", "[50, 1]", "int64[B]"]),
    (lambda d: d.update(label=d["label"] + 0.5), ["`label`", "float64", "int64[B]"]),
    (lambda d: d.update(x=d["x"].astype(str)), ["`x`", "<U", "float32[B, 4]"]),
    (lambda d: d.pop("label"), ["no array `label`", "int64[B]", "x"]),
    (lambda d: d.update(label=d["label"][:49]), ["`label`", "49 rows", "50"]),
])
def test_data_errors_name_the_array_before_training(tmp_path, change, words):
    data = tiny(50)
    change(data)
    with pytest.raises(flashc.FlashError) as info:
        classifier("optimizer sgd(lr = 0.1)").fit(data, tmp_path / "run", quiet=True)
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / "run").exists()


def test_whole_float_labels_are_accepted():
    data = tiny(50)
    data["label"] = data["label"].astype(np.float64)
    result = classifier("optimizer sgd(lr = 0.1)", "epochs 1").fit(data, quiet=True)
    assert len(result.history) == 1


def _blobs_arrays() -> dict[str, np.ndarray]:
    return load_data("blobs", classifier("optimizer sgd(lr = 0.1)").graph).arrays


def test_csv_with_named_columns_trains(tmp_path):
    arrays = _blobs_arrays()
    path = tmp_path / "blobs.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "x_3", "x_1", "x_0", "x_2"])  # any column order
        for x, y in zip(arrays["x"], arrays["label"]):
            w.writerow([int(y), repr(float(x[3])), repr(float(x[1])), repr(float(x[0])), repr(float(x[2]))])
    spec = classifier("optimizer adam(lr = 0.02)", "batch 32", "epochs 3")
    loaded = load_data(path, spec.graph)
    np.testing.assert_array_equal(loaded.arrays["x"], arrays["x"])
    np.testing.assert_array_equal(loaded.arrays["label"], arrays["label"])
    result = spec.fit(path, quiet=True)
    assert result.test["test_accuracy"] > 0.9


@pytest.mark.parametrize("suffix", ["npz", "safetensors"])
def test_array_files_train(tmp_path, suffix):
    arrays = _blobs_arrays()
    path = tmp_path / f"blobs.{suffix}"
    if suffix == "npz":
        np.savez(path, **arrays)
    else:
        save_numpy(arrays, str(path))
    spec = classifier("optimizer adam(lr = 0.02)", "batch 32", "epochs 3")
    from_file = spec.fit(path, quiet=True)
    builtin = spec.fit("blobs", quiet=True)
    assert from_file.history == builtin.history
    assert from_file.test["test_accuracy"] > 0.9


# --- the command line -------------------------------------------------------------------------------------

CLI_SPEC = """
model Net(classes = 3) {
  input x: float32[B, 4]
  output logits = x |> linear(16) |> batchnorm |> relu |> dropout(0.2) |> linear(classes)
}
train Net {
  target label: int64[B]
  loss cross_entropy(logits, label)
  optimizer adam(lr = 0.01)
  batch 64
  epochs 5
  early_stop patience = 3, restore_best
}
"""


def test_cli_train_resume_and_compile(tmp_path, capsys):
    spec_path = tmp_path / "net.flash"
    spec_path.write_text(CLI_SPEC)
    run = tmp_path / "run"
    assert cli(["train", str(spec_path), "--data", "blobs", "-o", str(run), "--epochs", "2"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert cli(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3
    for name in ("best.safetensors", "last.safetensors", "metrics.csv", "curve.png", "run.json"):
        assert (run / name).is_file(), name
    onnx_path = tmp_path / "net.onnx"
    assert cli(["compile", str(spec_path), "--target", "onnx", "-o", str(onnx_path),
                "--weights", str(run / "best.safetensors")]) == 0
    assert "run saved in" in capsys.readouterr().out

    spec = flashc.load(spec_path)
    test = split(load_data("blobs", spec.graph), 0.1, 0.1, 0).test.arrays
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": test["x"]})
    model = spec.to_torch(weights=run / "best.safetensors").eval()
    with torch.no_grad():
        want = model(torch.from_numpy(test["x"])).numpy()
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert (want.argmax(1) == test["label"]).mean() > 0.9


def test_cli_train_usage_and_spec_errors(tmp_path, capsys):
    assert cli(["train", "--resume", str(tmp_path)]) == 2
    bad = tmp_path / "bad.flash"
    bad.write_text(CLI_SPEC.replace("adam(", "adamm("))
    assert cli(["train", str(bad), "--data", "blobs", "-o", str(tmp_path / "r")]) == 1
    assert "did you mean `adam`" in capsys.readouterr().err


def test_data_file_path_is_checked(tmp_path):
    with pytest.raises(flashc.FlashError, match="no such data file or built-in dataset"):
        classifier("optimizer sgd(lr = 0.1)").fit(tmp_path / "missing.npz", quiet=True)


def test_every_loss_is_checked():
    """The loss table of `build.train` and the implementations agree (perceptual is the loop's)."""
    from flashc.build.train import LOSSES as DECLARED
    from flashc.train.losses import LOSSES as IMPLEMENTED

    assert set(DECLARED) - {"perceptual"} == set(IMPLEMENTED)
    tested = {name for name in IMPLEMENTED for text, _, _ in LOSSES if re.match(rf"{name}\(", text)}
    assert tested == set(IMPLEMENTED)


def test_train_section_absent():
    spec = flashc.loads(MLP)
    with pytest.raises(flashc.FlashError, match="has no `train` section"):
        spec.fit("blobs", quiet=True)


def test_paths_accept_strings(tmp_path):
    result = classifier("optimizer sgd(lr = 0.1)", "epochs 1").fit("blobs", str(tmp_path / "s"), quiet=True)
    assert result.run == Path(tmp_path / "s") and (result.run / "best.safetensors").is_file()


# --- regressions: restore_best in memory, non-finite validation, monitors, schedule horizon -------


def test_restore_best_works_without_a_run_directory():
    spec = classifier("optimizer sgd(lr = 0.5)", "batch 8", "epochs 6",
                      "early_stop monitor = val_loss, patience = 2, min_delta = 1e9, restore_best")
    first = spec.fit(tiny(), epochs=1, quiet=True)
    result = spec.fit(tiny(), quiet=True)
    assert result.best_epoch == 1 and "early stop" in result.stop_reason
    same_weights(state(result.model), state(first.model))


def test_a_non_finite_validation_loss_fails_the_run_and_is_never_best(tmp_path):
    spec = classifier("optimizer sgd(lr = 1e30)", "batch full", "epochs 5")
    result = spec.fit(tiny(), tmp_path, quiet=True)
    assert result.failed and "kept the last good checkpoint" in result.stop_reason
    for h in result.history:
        assert all(math.isfinite(v) for v in h.values())
    if (tmp_path / "best.safetensors").exists():
        for arr in load_file(str(tmp_path / "best.safetensors")).values():
            assert np.isfinite(arr).all()


def test_a_misspelt_monitor_is_a_check_error():
    with pytest.raises(flashc.FlashError, match=r"monitors `val_acc`.*") as err:
        classifier("optimizer sgd(lr = 0.1)", "early_stop monitor = val_acc, patience = 2")
    assert "did you mean `val_accuracy`?" in str(err.value)
    with pytest.raises(flashc.FlashError, match="monitors `typo`"):
        classifier("optimizer sgd(lr = 0.1)", "schedule reduce_on_plateau(monitor = typo)")


def test_more_epochs_stretch_the_schedule():
    spec = classifier("optimizer sgd(lr = 0.1)", "schedule cosine", "epochs 4", "batch full")
    lrs = [h["lr"] for h in spec.fit(tiny(), epochs=8, quiet=True).history]
    assert all(a > b for a, b in zip(lrs, lrs[1:])), lrs  # still falling at epoch 8, never back up


def test_ctrl_c_saves_the_last_checkpoint_and_returns(tmp_path, monkeypatch):
    spec = classifier("optimizer sgd(lr = 0.1)", "batch 8", "epochs 5")
    real = Trainer.train_epoch

    def interrupted(self, progress):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real(self, progress)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    result = spec.fit(tiny(), tmp_path, quiet=True)
    assert result.stop_reason.startswith("interrupted at epoch 3") and len(result.history) == 2
    assert json.loads((tmp_path / "last.json").read_text())["reason"] == "interrupted"
    monkeypatch.setattr(Trainer, "train_epoch", real)
    resumed = spec.fit(tiny(), tmp_path, resume=True, quiet=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
