"""Convolutions, pooling, resampling and norms against their torch.nn references.

Each case is a one-line `.flash` spec; the reference module's state_dict is loaded into
both backends, and the generated module and onnxruntime must match the reference at
two batch sizes (and, for the lowerings that change with the opset, at several opsets).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import flashc
from flashc.diagnostics import FlashError

ATOL = 1e-5
SPEC = """model M() {{
  input x: float32[{shape}]
  output y = x |> {call}
}}
"""
# Sizes for the symbolic dims of an input, one dict per run.
RUNS = ({"B": 2, "H": 6, "W": 7}, {"B": 3, "H": 5, "W": 4})


def spec_for(call: str, shape: str) -> flashc.Spec:
    return flashc.loads(SPEC.format(shape=shape, call=call))


def weights_for(spec: flashc.Spec, ref: nn.Module) -> dict[str, torch.Tensor]:
    """The reference's state_dict under the spec's layer path."""
    layers = list(spec.graph.layers)
    assert len(layers) <= 1, layers
    return {f"{layers[0]}.{k}": v for k, v in ref.state_dict().items()} if layers else {}


def randomize(ref: nn.Module, seed: int = 0) -> nn.Module:
    """Norm scales and shifts and running statistics away from their ones and zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*ref.named_parameters(), *ref.named_buffers()]:
            if not t.is_floating_point():
                continue
            if name == "running_var":
                t.copy_(0.5 + 1.5 * torch.rand(t.shape, generator=g))
            elif isinstance(ref, (nn.GroupNorm, nn.RMSNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
                t.copy_(t + 0.5 * torch.randn(t.shape, generator=g))
    return ref


def feed(shape: str, env: dict[str, int], seed: int) -> torch.Tensor:
    dims = [env[d] if d in env else int(d) for d in (s.strip() for s in shape.split(","))]
    return torch.randn(*dims, generator=torch.Generator().manual_seed(seed))


def session(spec: flashc.Spec, weights: dict, opset: int) -> ort.InferenceSession:
    model = spec.to_onnx(weights=weights, opset=opset)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def check(call: str, shape: str, ref: nn.Module, opsets: tuple[int, ...] = (23,)) -> flashc.Spec:
    """The spec's torch module and its ONNX models compute what ``ref`` computes."""
    spec = spec_for(call, shape)
    weights = weights_for(spec, ref.eval())
    module = spec.to_torch(weights=weights).eval()
    sessions = {opset: session(spec, weights, opset) for opset in opsets}
    for i, env in enumerate(RUNS):
        x = feed(shape, env, seed=i)
        with torch.no_grad():
            want = ref(x).numpy()
            got = module(x).numpy()
        assert got.shape == want.shape, f"{call}: {got.shape} != reference {want.shape}"
        assert np.abs(got - want).max() <= ATOL, f"{call}: torch differs from the reference"
        for opset, s in sessions.items():
            out = s.run(None, {"x": x.numpy()})[0]
            assert out.shape == want.shape, f"{call}, opset {opset}: {out.shape} != reference {want.shape}"
            assert np.abs(out - want).max() <= ATOL, f"{call}, opset {opset}: onnxruntime differs by {np.abs(out - want).max()}"
    return spec


CASES = [
    # convolutions
    ("conv1d(6, kernel = 3, stride = 2, padding = 1, groups = 2)", "B, 4, 11",
     lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)),
    ("conv1d(6, 4, dilation = 3, groups = 2, same)", "B, 4, 9",
     lambda: nn.Conv1d(4, 6, 4, dilation=3, groups=2, padding="same")),
    ("conv2d(8, kernel = (3, 2), dilation = (2, 1), groups = 4, bias = false)", "B, 4, 9, 8",
     lambda: nn.Conv2d(4, 8, (3, 2), dilation=(2, 1), groups=4, bias=False)),
    ("conv2d(6, kernel = (4, 3), dilation = (1, 2), groups = 2, same)", "B, 4, H, W",
     lambda: nn.Conv2d(4, 6, (4, 3), dilation=(1, 2), groups=2, padding="same")),
    ("conv2d(4, 5, groups = 4, same)", "B, 4, 8, 8", lambda: nn.Conv2d(4, 4, 5, groups=4, padding="same")),
    ("conv_transpose2d(6, kernel = 3, stride = 2, padding = 1, output_padding = 1)", "B, 4, H, W",
     lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d(6, kernel = (2, 3), stride = (2, 1), dilation = (1, 2), groups = 2, bias = false)", "B, 4, 5, 6",
     lambda: nn.ConvTranspose2d(4, 6, (2, 3), stride=(2, 1), dilation=(1, 2), groups=2, bias=False)),
    # resampling
    ("upsample(2)", "B, 3, H, W", lambda: nn.Upsample(scale_factor=2)),
    ("upsample((2, 3))", "B, 2, 4, 5", lambda: nn.Upsample(scale_factor=(2, 3))),
    ('upsample(2, mode = "bilinear")', "B, 3, H, W", lambda: nn.Upsample(scale_factor=2, mode="bilinear")),
    ('upsample((3, 2), "bilinear", align_corners)', "B, 2, 4, 5",
     lambda: nn.Upsample(scale_factor=(3, 2), mode="bilinear", align_corners=True)),
    ("pixel_shuffle(2)", "B, 12, H, W", lambda: nn.PixelShuffle(2)),
    ("pixel_shuffle(3)", "B, 18, 2, 3", lambda: nn.PixelShuffle(3)),
    # pooling
    ("adaptive_avg_pool2d((2, 3))", "B, 3, 8, 9", lambda: nn.AdaptiveAvgPool2d((2, 3))),
    ("adaptive_avg_pool2d(1)", "B, 3, H, W", lambda: nn.AdaptiveAvgPool2d(1)),
    ("adaptive_max_pool2d(2)", "B, 3, 6, 4", lambda: nn.AdaptiveMaxPool2d(2)),
    ("global_avg_pool", "B, 3, H, W", lambda: nn.AdaptiveAvgPool2d(1)),
    ("global_max_pool", "B, 3, H, W", lambda: nn.AdaptiveMaxPool2d(1)),
    ("max_pool1d(3, stride = 2, padding = 1)", "B, 3, 10", lambda: nn.MaxPool1d(3, 2, 1)),
    ("avg_pool1d(2)", "B, 3, 9", lambda: nn.AvgPool1d(2)),
    ("max_pool2d(3, stride = 2, padding = 1)", "B, 3, H, W", lambda: nn.MaxPool2d(3, 2, 1)),
    # norms
    ("batchnorm1d", "B, 6", lambda: nn.BatchNorm1d(6)),
    ("batchnorm1d(eps = 1e-3, momentum = 0.2)", "B, 4, 7", lambda: nn.BatchNorm1d(4, eps=1e-3, momentum=0.2)),
    ("batchnorm2d", "B, 3, H, W", lambda: nn.BatchNorm2d(3)),
]
# Lowerings that differ between opsets: decomposed before GroupNormalization-21 and RMSNormalization-23.
NORM_CASES = [
    ("groupnorm(3)", "B, 6, H, W", lambda: nn.GroupNorm(3, 6)),
    ("groupnorm(2, eps = 1e-3)", "B, 4, 7", lambda: nn.GroupNorm(2, 4, eps=1e-3)),
    ("groupnorm(2)", "B, 6", lambda: nn.GroupNorm(2, 6)),
    ("rmsnorm", "B, 5, 8", lambda: nn.RMSNorm(8, eps=1e-6)),
    ("rmsnorm(eps = 1e-5)", "B, 6", lambda: nn.RMSNorm(6, eps=1e-5)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on a padded copy
@pytest.mark.parametrize(("call", "shape", "make"), CASES, ids=[c[0] for c in CASES])
def test_matches_torch_nn(call, shape, make) -> None:
    torch.manual_seed(0)
    check(call, shape, randomize(make()))


@pytest.mark.parametrize(("call", "shape", "make"), NORM_CASES, ids=[c[0] for c in NORM_CASES])
def test_norms_match_torch_nn_at_every_opset(call, shape, make) -> None:
    check(call, shape, randomize(make()), opsets=(17, 18, 21, 23))


@pytest.mark.parametrize(("call", "shape", "ref"), [
    ("batchnorm1d(momentum = 0.3)", "4, 5, 6", nn.BatchNorm1d(5, momentum=0.3)),
    ("batchnorm2d", "3, 2, 4, 4", nn.BatchNorm2d(2)),
])
def test_batchnorm_train_mode_updates_running_stats_like_torch(call, shape, ref) -> None:
    spec = spec_for(call, shape)
    randomize(ref)
    module = spec.to_torch(weights=weights_for(spec, ref))
    module.train()
    ref.train()
    for i in range(2):
        x = feed(shape, {}, seed=i)
        assert np.abs(module(x).detach().numpy() - ref(x).detach().numpy()).max() <= ATOL
    ours = {k.split(".", 1)[1]: v for k, v in module.state_dict().items()}
    for key, want in ref.state_dict().items():
        assert torch.allclose(ours[key], want, atol=ATOL, rtol=0), key
    assert int(ours["num_batches_tracked"]) == 2


def test_same_padding_and_symbolic_sizes_in_the_generated_code() -> None:
    spec = spec_for("conv2d(8, 3, same) |> upsample(2) |> pixel_shuffle(2)", "B, 4, H, W")
    assert spec.outputs == {"y": "float32[B, 2, H * 2 * 2, W * 2 * 2]"}
    source = spec.torch_source()
    assert "padding='same'" in source
    assert "F.interpolate(conv2d, scale_factor=(2.0, 2.0), mode='nearest')" in source
    pads = [a.ints for n in spec.to_onnx().graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "pads"]
    assert pads == [[1, 1, 1, 1]]


def test_even_kernel_same_padding_puts_the_extra_zero_at_the_end() -> None:
    spec = spec_for("conv1d(2, 4, dilation = 3, same)", "B, 2, 9")
    pads = [a.ints for n in spec.to_onnx().graph.node for a in n.attribute if a.name == "pads"]
    assert pads == [[4, 5]]  # dilation (kernel - 1) = 9 zeros in all, as torch's padding='same'


def test_batchnorm_aliases_keep_pointing_at_their_own_ops() -> None:
    from flashc.ops import REGISTRY

    assert REGISTRY["batch_norm"].name == "batchnorm"
    assert REGISTRY["batch_norm1d"].name == "batchnorm1d"
    assert REGISTRY["batch_norm2d"].name == "batchnorm2d"


ERRORS = [
    ("conv_transpose2d(4, kernel = 3)", "B, 3, 8",
     "`conv_transpose2d` expects a float image [B, C, H, W], got float32[B, 3, 8]"),
    ("pixel_shuffle(3)", "B, 12, 4, 4", "pixel_shuffle upscale 3 needs channels divisible by 9, got 12 channels in [B, 12, 4, 4]"),
    ("groupnorm(4)", "B, 6, 4, 4", "groupnorm groups=4 must divide the 6 channels of [B, 6, 4, 4]"),
    ("conv2d(4, 3, stride = 2, same)", "B, 3, 8, 8", "`conv2d` with `same` padding needs stride 1, got stride 2"),
    ("conv2d(4, 3, padding = 1, same)", "B, 3, 8, 8", "`conv2d` takes either `same` or `padding`, got both (padding 1)"),
    ("conv1d(4, kernel = (3, 3))", "B, 3, 8",
     "`conv1d` kernel must be a whole number >= 1 or a tuple of 1 of them, got (3, 3)"),
    ("conv1d(4, 3)", "B, 3, 8, 8", "`conv1d` expects a float signal [B, C, L], got float32[B, 3, 8, 8]"),
    ("conv2d(4, 3, groups = 2)", "B, 3, 8, 8", "conv2d groups=2 must divide in_channels=3 and out_channels=4"),
    ("conv_transpose2d(4, 3, stride = 2, output_padding = 2)", "B, 3, 8, 8",
     "`conv_transpose2d` output_padding 2 must be smaller than the stride 2 or the dilation 1"),
    ("adaptive_avg_pool2d(3)", "B, 3, 8, 8",
     "`adaptive_avg_pool2d` to (3, 3) needs input sizes that it divides, got [B, 3, 8, 8]: ONNX has no adaptive "
     "pooling, only even windows"),
    ("adaptive_max_pool2d(2)", "B, 3, H, W",
     "`adaptive_max_pool2d` to (2, 2) needs input sizes that it divides, got [B, 3, H, W]: ONNX has no adaptive "
     "pooling, only even windows"),
    ("upsample(2, align_corners)", "B, 3, 4, 4", "upsample align_corners applies to mode 'bilinear' only, got mode 'nearest'"),
    ("upsample(0)", "B, 3, 4, 4", "upsample scale must be a whole number >= 1 or a pair of them, got 0"),
    ("batchnorm2d", "B, 3, 8", "batchnorm2d expects a float [B, C, H, W], got float32[B, 3, 8]"),
    ("batchnorm1d", "B, 3, 8, 8", "batchnorm1d expects a float [B, C] or [B, C, L], got float32[B, 3, 8, 8]"),
    ("rmsnorm", "B, 3, T", "rmsnorm needs a fixed last axis, got [B, 3, T]"),
    ("global_avg_pool", "B, 3", "`global_avg_pool` expects a float [B, C, ...] with spatial axes, got float32[B, 3]"),
]


@pytest.mark.parametrize(("call", "shape", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_shape_errors_point_at_the_call(call, shape, message) -> None:
    text = SPEC.format(shape=shape, call=call)
    with pytest.raises(FlashError) as info:
        flashc.loads(text)
    (d,) = info.value.diagnostics
    assert d.message == message
    assert (d.span.line, d.span.col) == (3, text.splitlines()[2].index(call) + 1)


def test_hints_name_the_fix() -> None:
    with pytest.raises(FlashError) as info:
        spec_for("batchnorm2d", "B, 3, 8")
    assert info.value.diagnostics[0].hint == "use `batchnorm1d` for rank 3"
    with pytest.raises(FlashError) as info:
        spec_for("adaptive_avg_pool2d(3)", "B, 3, 8, 8")
    assert info.value.diagnostics[0].hint == "choose an output size that divides 8 x 8, or use `avg_pool2d` with a kernel"
