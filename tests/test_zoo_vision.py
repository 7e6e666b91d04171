"""Convolutional nets of the zoo against their references with the same weights, in PyTorch and
onnxruntime (<= 1e-4), at the published channel sizes on small images.

torchvision does not import with the CPU build of torch used here, so each reference is
torchvision's architecture reproduced in plain torch.nn from its published source, with
torchvision's module names: the spec takes the reference's state dict as it is (no renames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from zoo_reference import assert_matches_reference, numpy_state, perturb, saved

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.ReLU6, eps: float = 1e-5) -> nn.Sequential:
    """torchvision.ops.Conv2dNormActivation: conv (no bias), batchnorm, activation: children 0, 1, 2."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=eps)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def check_image_net(name: str, reference: nn.Module, sizes: tuple[tuple[int, int, int], ...], seed: int,
                    **overrides) -> None:
    """The spec takes the reference's state dict as it is and gives its logits at every (batch, H, W)."""
    spec = flashc.load(SPECS / f"{name}.flash", **overrides)
    reference = perturb(reference, seed=seed, std=0.1)
    trainable = sum(p.numel() for p in reference.parameters())
    assert spec.parameter_count == trainable
    weights = numpy_state(reference)
    rng = np.random.default_rng(seed)
    for batch, h, w in sizes:
        image = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            want = reference(torch.from_numpy(image)).numpy()
        assert_matches_reference(spec, weights, {"image": image}, want)


# --- MobileNetV2 (torchvision.models.mobilenetv2) ----------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(inp, hidden, 1))
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, oup, 1, bias=False),
                   nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))  # t, c, n, s of the paper's Table 2

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        features: list[nn.Module] = [conv_bn_act(3, 32, 3, 2)]
        channels = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        features.append(conv_bn_act(channels, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def test_mobilenet_v2_full_size_has_torchvision_state_dict():
    spec = flashc.load(SPECS / "mobilenet_v2.flash")
    ref = MobileNetV2()
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {
        k: w.spec.shape for k, w in spec.graph.weights.items()}
    assert spec.parameter_count == sum(p.numel() for p in ref.parameters()) == 3_504_872


def test_mobilenet_v2_matches_torchvision_architecture():
    torch.manual_seed(0)
    check_image_net("mobilenet_v2", MobileNetV2(num_classes=10), ((1, 32, 32), (2, 40, 56)), seed=0, classes=10)


# --- DCGAN (the PyTorch DCGAN tutorial's Generator and Discriminator) ---------------------------


class Generator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.main(image).view(-1)  # the tutorial's output.view(-1)


def test_dcgan_tutorial_sizes():
    path = SPECS / "dcgan.flash"
    assert flashc.load(path).parameter_count == sum(p.numel() for p in Generator().parameters()) == 3_576_704
    spec = flashc.load_model(path, "Discriminator")
    assert spec.parameter_count == sum(p.numel() for p in Discriminator().parameters()) == 2_765_568
    assert spec.outputs == {"real": "float32[B]"}


def test_dcgan_pair_matches_the_tutorial_modules():
    """Generator and discriminator take the tutorial's state dicts as they are; D(G(z)) agrees too."""
    torch.manual_seed(1)
    path = SPECS / "dcgan.flash"
    generator = perturb(Generator(ngf=8), seed=1)
    discriminator = perturb(Discriminator(ndf=8), seed=2)
    g_spec, d_spec = flashc.load(path, ngf=8), flashc.load_model(path, "Discriminator", {"ndf": 8})
    z = np.random.default_rng(1).standard_normal((3, 100, 1, 1)).astype(np.float32)
    with torch.no_grad():
        fake = generator(torch.from_numpy(z))
        real = discriminator(fake)
    assert_matches_reference(g_spec, numpy_state(generator), {"z": z}, fake.numpy())
    assert_matches_reference(d_spec, numpy_state(discriminator), {"image": fake.numpy()}, real.numpy())


# --- EfficientNet-B0 (torchvision.models.efficientnet) -----------------------------------------


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with SiLU inside, as MBConv uses it."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)
        self.activation, self.scale_activation = nn.SiLU(), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class MBConv(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        hidden = cin * expand
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_bn_act(cin, hidden, 1, act=nn.SiLU))
        layers += [conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, cin // 4)), conv_bn_act(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)  # stochastic depth: identity in eval


class EfficientNetB0(nn.Module):
    STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
              (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))  # t, k, s, in, out, n

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        features: list[nn.Module] = [conv_bn_act(3, 32, 3, 2, act=nn.SiLU)]
        for t, k, s, cin, cout, n in self.STAGES:
            features.append(nn.Sequential(*(MBConv(t, k, s if i == 0 else 1, cin if i == 0 else cout, cout)
                                            for i in range(n))))
        features.append(conv_bn_act(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_efficientnet_b0_full_size_has_torchvision_state_dict():
    spec = flashc.load(SPECS / "efficientnet_b0.flash")
    ref = EfficientNetB0()
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {
        k: w.spec.shape for k, w in spec.graph.weights.items()}
    assert spec.parameter_count == sum(p.numel() for p in ref.parameters()) == 5_288_548


def test_efficientnet_b0_matches_torchvision_architecture():
    torch.manual_seed(2)
    check_image_net("efficientnet_b0", EfficientNetB0(num_classes=10), ((1, 32, 32), (2, 48, 40)), seed=3, classes=10)


# --- ConvNeXt-Tiny (torchvision.models.convnext) -----------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        return nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute([0, 2, 3, 1]),
                                   nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(),
                                   nn.Linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale * self.block(x) + x  # stochastic depth: identity in eval


class ConvNeXt(nn.Module):
    def __init__(self, dims: tuple[int, ...] = (96, 192, 384, 768), depths: tuple[int, ...] = (3, 3, 9, 3),
                 num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            layers.append(nn.Sequential(*(CNBlock(dim) for _ in range(depth))))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                                        nn.Linear(dims[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext_to_flashc(key: str) -> str:
    """The one name the spec cannot take: a bare layer-scale parameter is a parameter's `weight`."""
    return key + ".weight" if key.endswith("layer_scale") else key


def test_convnext_tiny_full_size_has_torchvision_state_dict():
    spec = flashc.load(SPECS / "convnext_tiny.flash")
    ref = ConvNeXt()
    assert {convnext_to_flashc(k): tuple(v.shape) for k, v in ref.state_dict().items()} == {
        k: w.spec.shape for k, w in spec.graph.weights.items()}
    assert spec.parameter_count == sum(p.numel() for p in ref.parameters()) == 28_589_128


def test_convnext_matches_torchvision_architecture(tmp_path):
    """At 16 channels (two blocks in stage 3), layer scales random so every block counts; the state
    dict as it is, read through specs/convnext_tiny.torchvision.map."""
    torch.manual_seed(4)
    reference = perturb(ConvNeXt(dims=(16, 32, 64, 128), depths=(3, 3, 2, 3), num_classes=10), seed=4, std=0.2)
    spec = flashc.load(SPECS / "convnext_tiny.flash", dim=16, depth3=2, classes=10)
    weights = saved(reference, tmp_path)
    rng = np.random.default_rng(4)
    for batch, h, w in ((1, 32, 32), (2, 64, 48)):
        image = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            want = reference(torch.from_numpy(image)).numpy()
        assert_matches_reference(spec, weights, {"image": image}, want)


# --- SE-ResNet-50 (timm's seresnet50 layout; SE reduction 16 as in the paper) -------------------


class SEModule(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, channels // 16, 1), nn.Conv2d(channels // 16, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class SEBottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = 4 * planes
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
        self.se = SEModule(out)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                           if stride != 1 or inplanes != out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.se(self.bn3(self.conv3(torch.relu(self.bn2(self.conv2(y))))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class SEResNet50(nn.Module):
    def __init__(self, width: int = 64, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width)
        inplanes = width
        for i, (blocks, stride) in enumerate(((3, 1), (4, 2), (6, 2), (3, 2)), start=1):
            planes = width * 2 ** (i - 1)
            stage = []
            for j in range(blocks):
                stage.append(SEBottleneck(inplanes, planes, stride if j == 0 else 1))
                inplanes = 4 * planes
            setattr(self, f"layer{i}", nn.Sequential(*stage))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_se_resnet50_full_size_has_timm_state_dict():
    spec = flashc.load(SPECS / "se_resnet50.flash")
    ref = SEResNet50()
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {
        k: w.spec.shape for k, w in spec.graph.weights.items()}
    assert spec.parameter_count == sum(p.numel() for p in ref.parameters()) == 28_088_024


def test_se_resnet50_matches_the_paper_architecture():
    torch.manual_seed(5)
    check_image_net("se_resnet50", SEResNet50(width=16, num_classes=10), ((1, 32, 32), (2, 48, 40)), seed=5,
                    width=16, classes=10)
