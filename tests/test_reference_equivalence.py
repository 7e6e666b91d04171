"""flashc against PyTorch's own modules, with the same weights.

Each case builds a torch reference (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
nn.Transformer, nn.LSTM, nn.GRU, nn.BatchNorm1d/2d, nn.Conv1d/2d, and torchvision-style
ResNet-18 and ViT and a Hugging Face-style BERT written out from torch.nn),
copies its state dict into the spec's weight names (nn.MultiheadAttention's in_proj
splits into q, k, v rows in that order, out_proj is `out`) and compares outputs in float32:
the generated torch module in training mode (dropout 0, so deterministic; batchnorm uses
batch statistics and updates its running ones) and in eval mode, and the ONNX model in
onnxruntime in eval mode, all to 1e-5.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
from torch import nn

import flashc

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ATOL = 1e-5  # float32, torch and onnxruntime alike


# --- helpers ------------------------------------------------------------------------------------


def flashc_state(reference: nn.Module, prefix: str = "", rename=lambda k: k) -> dict[str, torch.Tensor]:
    """The reference's state dict under flashc's names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in reference.state_dict().items():
        key = prefix + rename(key)
        kind = key.rsplit("_", 1)[-1]
        if key.endswith(("in_proj_weight", "in_proj_bias")):
            for part, chunk in zip("qkv", value.chunk(3)):
                out[key.replace(f"in_proj_{kind}", f"{part}.{kind}")] = chunk.clone()
        else:
            out[key.replace("out_proj.", "out.")] = value.clone()
    return out


def perturb(reference: nn.Module, seed: int = 0) -> nn.Module:
    """Nonzero biases, norm scales away from 1, running stats away from 0/1: swaps show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name.endswith("bias") or "bias_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            elif p.dim() == 1:  # layernorm / batchnorm scale
                p.copy_(1 + torch.randn(p.shape, generator=gen) * 0.2)
        for name, b in reference.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
    return reference


def load_into(spec: flashc.Spec, state: dict[str, torch.Tensor]) -> nn.Module:
    assert set(state) == set(spec.graph.weights), set(state) ^ set(spec.graph.weights)
    return spec.to_torch(weights={k: v.detach().clone() for k, v in state.items()})


def run_onnx(spec: flashc.Spec, state: dict, feeds: dict[str, torch.Tensor], opset: int | None = None) -> list:
    proto = spec.to_onnx(weights={k: v.detach().numpy() for k, v in state.items()}, opset=opset)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in feeds.items()})


def as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def assert_close(got, want, atol: float = ATOL) -> None:
    got, want = as_tuple(got), as_tuple(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.as_tensor(g), w.detach(), atol=atol, rtol=0)


def check_modes(spec: flashc.Spec, state: dict, reference: nn.Module, call, inputs: dict[str, torch.Tensor],
                opsets=(None,)) -> None:
    """Train mode and eval mode in torch, eval mode in onnxruntime; ``call(inputs)`` runs the reference."""
    model = load_into(spec, state)
    args = [inputs[v.name] for v in spec.graph.inputs]
    for train in (True, False):
        reference.train(train)
        model.train(train)
        with torch.no_grad():
            want = call(inputs)
            got = model(*args)
        assert_close(got, want)
    for opset in opsets:
        assert_close(run_onnx(spec, state, inputs, opset), want)


# --- transformer layers -------------------------------------------------------------------------

D, HEADS, FF = 32, 4, 64


def encoder_layer_spec(norm_first: bool) -> flashc.Spec:
    if norm_first:
        body = """
  h = x + (x |> norm1 |> self_attn(key_padding_mask = pad))
  output y = h + (h |> norm2 |> linear1 |> relu |> linear2)"""
    else:
        body = """
  h = (x + (x |> self_attn(key_padding_mask = pad))) |> norm1
  output y = (h + (h |> linear1 |> relu |> linear2)) |> norm2"""
    return flashc.loads(f"""
model EncoderLayer(d = {D}, heads = {HEADS}, ff = {FF}) {{
  input x: float32[B, T, d]
  input pad: bool[B, T]
  self_attn = attention(heads)
  linear1 = linear(ff)
  linear2 = linear(d)
  norm1 = layernorm
  norm2 = layernorm{body}
}}
""")


def decoder_layer_spec(norm_first: bool) -> flashc.Spec:
    if norm_first:
        body = """
  h = x + (x |> norm1 |> self_attn)
  h = h + (h |> norm2 |> multihead_attn(kv = memory, key_padding_mask = memory_pad))
  output y = h + (h |> norm3 |> linear1 |> relu |> linear2)"""
    else:
        body = """
  h = (x + (x |> self_attn)) |> norm1
  h = (h + (h |> multihead_attn(kv = memory, key_padding_mask = memory_pad))) |> norm2
  output y = (h + (h |> linear1 |> relu |> linear2)) |> norm3"""
    return flashc.loads(f"""
model DecoderLayer(d = {D}, heads = {HEADS}, ff = {FF}) {{
  input x: float32[B, T, d]
  input memory: float32[B, S, d]
  input memory_pad: bool[B, S]
  self_attn = attention(heads, causal)
  multihead_attn = attention(heads)
  linear1 = linear(ff)
  linear2 = linear(d)
  norm1 = layernorm
  norm2 = layernorm
  norm3 = layernorm{body}
}}
""")


def padding(batch: int, length: int) -> torch.Tensor:
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[0, -2:] = True
    mask[-1, 1] = True
    return mask


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_transformer_encoder_layer(norm_first):
    torch.manual_seed(0)
    ref = perturb(nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, activation="relu", batch_first=True,
                                             norm_first=norm_first))
    spec = encoder_layer_spec(norm_first)
    for batch, length in ((2, 5), (3, 8)):
        x, pad = torch.randn(batch, length, D), padding(batch, length)
        check_modes(spec, flashc_state(ref), ref, lambda f: ref(f["x"], src_key_padding_mask=f["pad"]),
                    {"x": x, "pad": pad}, opsets=(None, 17))


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_transformer_decoder_layer(norm_first):
    torch.manual_seed(1)
    ref = perturb(nn.TransformerDecoderLayer(D, HEADS, FF, dropout=0.0, activation="relu", batch_first=True,
                                             norm_first=norm_first))
    spec = decoder_layer_spec(norm_first)
    for batch, t, s in ((2, 5, 7), (3, 6, 4)):
        feeds = {"x": torch.randn(batch, t, D), "memory": torch.randn(batch, s, D), "memory_pad": padding(batch, s)}
        causal = nn.Transformer.generate_square_subsequent_mask(t)

        def call(f, causal=causal):
            return ref(f["x"], f["memory"], tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=f["memory_pad"])

        check_modes(spec, flashc_state(ref), ref, call, feeds, opsets=(None, 17))


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "unmasked"])
def test_transformer_spec_matches_nn_transformer(causal):
    """specs/transformer.flash, reduced, is nn.Transformer with the same sizes."""
    torch.manual_seed(2)
    ref = perturb(nn.Transformer(d_model=D, nhead=HEADS, num_encoder_layers=2, num_decoder_layers=2,
                                 dim_feedforward=FF, dropout=0.0, batch_first=True))
    spec = flashc.load(SPECS / "transformer.flash", d=D, heads=HEADS, ff=FF, depth=2, p=0.0, causal=causal)
    for batch, s, t in ((2, 7, 5), (3, 4, 6)):
        mask = nn.Transformer.generate_square_subsequent_mask(t) if causal else None

        def call(f, mask=mask):
            return ref(f["src"], f["tgt"], tgt_mask=mask, tgt_is_causal=causal)

        check_modes(spec, flashc_state(ref), ref, call, {"src": torch.randn(batch, s, D), "tgt": torch.randn(batch, t, D)})


# --- recurrent layers ---------------------------------------------------------------------------


@pytest.mark.parametrize("initial_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_layers(kind, initial_state):
    features, hidden, layers = 5, 7, 2
    torch.manual_seed(3)
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    ref = cls(features, hidden, num_layers=layers, bidirectional=True, batch_first=True)
    states = ["h0", "c0"] if kind == "lstm" else ["h0"]
    outs = ["y", "hn", "cn"] if kind == "lstm" else ["y", "hn"]
    lines = [f"  input x: float32[B, T, {features}]"]
    if initial_state:
        lines += [f"  input {s}: float32[{2 * layers}, B, {hidden}]" for s in states]
    given = ", ".join(f"{s} = {s}" for s in states) if initial_state else ""
    lines += [f"  rnn = {kind}({hidden}, layers = {layers}, bidirectional)",
              f"  {', '.join(outs)} = rnn(x{', ' + given if given else ''})"]
    lines += [f"  output {o}" for o in outs]
    spec = flashc.loads("model Recurrent() {\n" + "\n".join(lines) + "\n}\n")
    state = flashc_state(ref, "rnn.")

    def call(f):
        if not initial_state:
            y, last = ref(f["x"])
        else:
            y, last = ref(f["x"], (f["h0"], f["c0"]) if kind == "lstm" else f["h0"])
        return (y, *last) if kind == "lstm" else (y, last)

    for batch, length in ((1, 4), (3, 6)):
        feeds = {"x": torch.randn(batch, length, features)}
        if initial_state:
            feeds.update({s: torch.randn(2 * layers, batch, hidden) for s in states})

        check_modes(spec, state, ref, call, feeds)


# --- batchnorm ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "cls"), [((4, 3, 5, 6), nn.BatchNorm2d), ((6, 5), nn.BatchNorm1d),
                                            ((4, 3, 7), nn.BatchNorm1d)], ids=["2d", "1d_vector", "1d_sequence"])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_train_and_eval(shape, cls, momentum):
    """Batch statistics and running-stat updates in training, running statistics in eval."""
    torch.manual_seed(4)
    channels = shape[1]
    ref = perturb(cls(channels, eps=1e-3, momentum=momentum))
    dims = ", ".join(["B", *map(str, shape[1:])])
    spec = flashc.loads(f"model BN() {{\n  input x: float32[{dims}]\n  bn = batchnorm(eps = 1e-3, momentum = {momentum})\n"
                        "  output y = x |> bn\n}\n")
    model = load_into(spec, flashc_state(ref, "bn."))
    ref.train()
    model.train()
    for step in range(3):
        x = torch.randn(*shape) * (step + 1) + step
        with torch.no_grad():
            assert_close(model(x), ref(x))
        sd = model.state_dict()
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(sd[f"bn.{key}"], getattr(ref, key), atol=ATOL, rtol=0)
    ref.eval()
    model.eval()
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        want = ref(x)
        assert_close(model(x), want)
    assert_close(run_onnx(spec, model.state_dict(), {"x": x}), want)


# --- convolution -------------------------------------------------------------------------------

CONV_CASES = [
    # in, out, kernel, stride, padding, dilation, groups (flashc settings; torch takes the same)
    (6, 9, 3, 1, 2, 2, 3),
    (4, 8, (3, 5), (2, 1), (1, 2), (2, 1), 4),
    (8, 8, 3, 2, 1, 3, 8),  # depthwise
    (4, 6, 4, 1, "same", 2, 2),  # even kernel: the odd pad goes at the end, as torch does
]


def flash_value(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(map(str, v)) + ")"
    return f'"{v}"' if isinstance(v, str) else str(v)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(map(str, c)))
def test_conv2d_groups_and_dilation(case):
    cin, cout, kernel, stride, pad, dilation, groups = case
    torch.manual_seed(5)
    ref = perturb(nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, groups=groups))
    settings = ", ".join(f"{k} = {flash_value(v)}" for k, v in
                         (("stride", stride), ("padding", pad), ("dilation", dilation), ("groups", groups)))
    spec = flashc.loads(f"model Conv() {{\n  input x: float32[B, {cin}, H, W]\n"
                        f"  conv = conv2d({cout}, {flash_value(kernel)}, {settings})\n  output y = x |> conv\n}}\n")
    for batch, h, w in ((1, 11, 13), (3, 16, 9)):
        x = torch.randn(batch, cin, h, w)
        check_modes(spec, flashc_state(ref, "conv."), ref, lambda f: ref(f["x"]), {"x": x})


def test_conv1d_groups_and_dilation():
    torch.manual_seed(6)
    ref = perturb(nn.Conv1d(6, 4, 3, stride=2, padding=3, dilation=3, groups=2))
    spec = flashc.loads("model Conv() {\n  input x: float32[B, 6, L]\n"
                        "  conv = conv1d(4, 3, stride = 2, padding = 3, dilation = 3, groups = 2)\n"
                        "  output y = x |> conv\n}\n")
    for batch, length in ((2, 17), (3, 10)):
        x = torch.randn(batch, 6, length)
        check_modes(spec, flashc_state(ref, "conv."), ref, lambda f: ref(f["x"]), {"x": x})


# --- ResNet-18 --------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, written out (torchvision is not a dependency)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def downsample(inplanes: int, planes: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))


class ResNet18(nn.Module):
    """torchvision.models.resnet18's structure at a chosen width."""

    def __init__(self, width: int = 64, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, inplanes = [], width
        for i, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            down = downsample(inplanes, planes, stride) if stride != 1 or inplanes != planes else None
            stages.append(nn.Sequential(BasicBlock(inplanes, planes, stride, down), BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torchvision_to_flashc(key: str) -> str:
    """specs/resnet18.flash uses torchvision's own names: a checkpoint loads unchanged."""
    return key


def check_batchnorm_net(spec: flashc.Spec, ref: nn.Module, prefix: str, inputs: list[torch.Tensor]) -> None:
    """Training steps (batch statistics, running-stat updates), then eval in torch and onnxruntime."""
    model = load_into(spec, flashc_state(ref, prefix, torchvision_to_flashc))
    ref.train()
    model.train()
    for x in inputs:
        with torch.no_grad():
            assert_close(model(x), ref(x))
    after = flashc_state(ref, prefix, torchvision_to_flashc)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, after[key], atol=ATOL, rtol=0)
    ref.eval()
    model.eval()
    x = inputs[0]
    with torch.no_grad():
        want = ref(x)
        assert_close(model(x), want)
    assert_close(run_onnx(spec, model.state_dict(), {spec.graph.inputs[0].name: x}), want)


@pytest.mark.parametrize("shortcut", ["identity", "downsample"])
def test_resnet_basic_block(shortcut):
    """The BasicBlock of specs/resnet18.flash, imported into a one-block spec, is torchvision's."""
    torch.manual_seed(7)
    cin, c, stride = (16, 16, 1) if shortcut == "identity" else (8, 16, 2)
    down = downsample(cin, c, stride) if shortcut == "downsample" else None
    ref = perturb(BasicBlock(cin, c, stride, down))
    args = f"channels = {c}, stride = {stride}"
    if shortcut == "downsample":
        args += f", downsample = sequential(conv2d({c}, 1, stride = {stride}, bias = false), batchnorm)"
    spec = flashc.loads(f"""
from "{SPECS / 'resnet18.flash'}" import BasicBlock
model Block() {{
  input x: float32[B, {cin}, 8, 8]
  block0 = BasicBlock({args})
  output y = x |> block0
}}
""")
    check_batchnorm_net(spec, ref, "block0.", [torch.randn(b, cin, 8, 8) for b in (2, 3, 4)])


def test_resnet18_matches_torchvision_structure():
    torch.manual_seed(8)
    ref = perturb(ResNet18(width=8, classes=10))
    spec = flashc.load(SPECS / "resnet18.flash", width=8, size=32, classes=10)
    check_batchnorm_net(spec, ref, "", [torch.randn(b, 3, 32, 32) for b in (2, 3)])


def test_resnet18_full_size_matches_torchvision_parameters():
    ref = ResNet18()
    spec = flashc.load(SPECS / "resnet18.flash")
    assert sum(p.numel() for p in ref.parameters()) == spec.parameter_count == 11_689_512
    shapes = {torchvision_to_flashc(k): tuple(v.shape) for k, v in ref.state_dict().items()}
    assert shapes == {k: w.spec.shape for k, w in spec.graph.weights.items()}


# --- ViT-B/16 and BERT-base, reduced, against the same architectures built from torch.nn -----------


def encoder_stack(depth: int, d: int, heads: int, ff: int, eps: float, norm_first: bool) -> nn.ModuleList:
    return nn.ModuleList(nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu", layer_norm_eps=eps,
                                                    batch_first=True, norm_first=norm_first) for _ in range(depth))


def layer_renamer(names: dict[str, str]):
    """Rename nn.TransformerEncoderLayer parts (``layers.i.norm1.`` ...) to a spec's layer names."""

    def rename(key: str) -> str:
        for old, new in names.items():
            key = re.sub(rf"^layers\.(\d+)\.{old}\.", rf"layers.\1.{new}.", key)
        return key

    return rename


class ViT(nn.Module):
    """torchvision's VisionTransformer: its EncoderBlock is a pre-norm nn.TransformerEncoderLayer with gelu."""

    def __init__(self, size=32, patch=8, d=32, heads=4, mlp=64, depth=2, classes=10):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, d, patch, stride=patch)
        self.class_token = nn.Parameter(torch.randn(1, 1, d))
        self.pos_embedding = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, d))
        self.layers = encoder_stack(depth, d, heads, mlp, 1e-6, norm_first=True)
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x)[:, 0])


def test_vit_b16_spec_matches_torchvision_structure():
    torch.manual_seed(9)
    ref = perturb(ViT())
    spec = flashc.load(SPECS / "vit_b16.flash", size=32, patch=8, d=32, heads=4, mlp=64, depth=2, classes=10)
    # the learned tensors are found by shape: `x = parameter(...)` does not name its weight after x
    by_shape = {w.spec.shape: k for k, w in spec.graph.weights.items() if w.spec.shape[:1] == (1,)}
    rename = layer_renamer({"self_attn": "self_attention", "norm1": "ln_1", "norm2": "ln_2", "linear1": "fc1",
                            "linear2": "fc2"})
    state = flashc_state(ref, rename=rename)
    state[by_shape[(1, 1, 32)]] = state.pop("class_token")
    state[by_shape[(1, 17, 32)]] = state.pop("pos_embedding")
    for batch in (1, 3):
        check_modes(spec, state, ref, lambda f: ref(f["image"]), {"image": torch.randn(batch, 3, 32, 32)})


class Bert(nn.Module):
    """Hugging Face's BertModel: embeddings + layernorm, post-norm gelu encoder layers, tanh pooler."""

    def __init__(self, vocab=60, ctx=16, types=2, d=32, heads=4, ff=64, depth=2):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(ctx, d)
        self.token_type_embeddings = nn.Embedding(types, d)
        self.embeddings_norm = nn.LayerNorm(d, eps=1e-12)
        self.layers = encoder_stack(depth, d, heads, ff, 1e-12, norm_first=False)
        self.pooler = nn.Linear(d, d)

    def forward(self, tokens, token_types, padding):
        positions = torch.arange(tokens.shape[1])
        h = self.word_embeddings(tokens) + self.position_embeddings(positions) + self.token_type_embeddings(token_types)
        h = self.embeddings_norm(h)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=padding)
        return h, torch.tanh(self.pooler(h[:, 0]))


def test_bert_base_spec_matches_bert_structure():
    torch.manual_seed(10)
    ref = perturb(Bert())
    spec = flashc.load(SPECS / "bert_base.flash", vocab=60, ctx=16, d=32, heads=4, ff=64, depth=2, p=0.0)
    rename = layer_renamer({"norm1": "attention_norm", "norm2": "output_norm", "linear1": "intermediate",
                            "linear2": "dense"})
    gen = torch.Generator().manual_seed(0)
    for batch, length in ((2, 6), (3, 9)):
        feeds = {"tokens": torch.randint(1, 60, (batch, length), generator=gen),
                 "token_types": torch.randint(0, 2, (batch, length), generator=gen),
                 "padding": padding(batch, length)}
        check_modes(spec, flashc_state(ref, rename=rename), ref,
                    lambda f: ref(f["tokens"], f["token_types"], f["padding"]), feeds)
