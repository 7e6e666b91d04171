"""Checkpoints as they are (issue 11, parts 2-4).

Small random-config Hugging Face models (built from a config, seeded, no download) are
`save_pretrained` to a temporary folder, compiled by the `flashc` command with
`--weights FOLDER` (through the spec's `NAME.hf.map`), and onnxruntime's outputs are compared
with the Hugging Face model's: <= 1e-4 in float32; a bfloat16 or float16 checkpoint is
compared with the same model rounded to that dtype (<= 1e-4: the conversion is exact) and
with the float32 original (<= 2e-2 relative). torchvision layouts are checked against
modules written out with torchvision's attribute names. `flashc new --from-hf` followed by
`flashc compile` reproduces each supported architecture. `flashc init` / `save_weights`
write weights every output reads back.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import flashc
from flashc.cli import main
from flashc.diagnostics import FlashError
from flashc.weightmap import maps_beside, parse_map, read_map
from flashc.weights import tied_names

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ATOL = 1e-4


def flashc_cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "flashc.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    return r


def flashc_main(*args, check: bool = True) -> subprocess.CompletedProcess:
    """The same command line, in this process (faster; the folder tests above use a real process)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    r = subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())
    if check:
        assert rc == 0, r.stderr
    return r


def sets(**sizes) -> list[str]:
    return [item for k, v in sizes.items() for item in ("--set", f"{k}={v}")]


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Norm scales away from one and nonzero biases, so a swapped or dropped tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name.lower() or "ln" in name):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def save(model: nn.Module, folder: Path, dtype: torch.dtype | None = None, **kw) -> nn.Module:
    """``save_pretrained`` (in ``dtype``); returns the float32 model with exactly the saved values."""
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder, **kw)
    return model.float().eval()


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def tokens(batch: int = 2, length: int = 7, vocab: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, vocab, (batch, length)).astype(np.int64)


def causal_lm_logits(model: nn.Module, toks: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(toks)).logits.numpy()


def llama_config(**kw):
    base = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=64, tie_word_embeddings=False)
    return base | kw


LLAMA_SIZES = dict(vocab=50, d=32, heads=4, kv_heads=2, ff=64, depth=2)


# --- the zoo specs read their references' checkpoints through their maps --------------------------


def test_gpt2_folder_compiles_through_its_map(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                                     eos_token_id=0)
    model = save(perturb(transformers.GPT2LMHeadModel(config)), tmp_path / "hf")
    out = tmp_path / "gpt2.onnx"
    flashc_cli("compile", SPECS / "gpt2.flash", "--target", "onnx", "-o", out, "--weights", tmp_path / "hf",
               *sets(vocab=50, ctx=16, d=32, heads=4, depth=2))
    toks = tokens()
    np.testing.assert_allclose(run_onnx(out, {"tokens": toks})[0], causal_lm_logits(model, toks), atol=ATOL, rtol=0)


def test_bert_folder_compiles_through_its_map(tmp_path):
    torch.manual_seed(1)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=16)
    model = save(perturb(transformers.BertModel(config)), tmp_path / "hf")
    out = tmp_path / "bert.onnx"
    flashc_cli("compile", SPECS / "bert_base.flash", "--target", "onnx", "-o", out, "--weights", tmp_path / "hf",
               *sets(vocab=50, ctx=16, d=32, heads=4, ff=64, depth=2))
    toks, types = tokens(), np.random.default_rng(1).integers(0, 2, (2, 7))
    pad = np.zeros((2, 7), dtype=bool)
    pad[0, -2:] = True
    seq, pooled = run_onnx(out, {"tokens": toks, "token_types": types, "padding": pad})
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(toks), token_type_ids=torch.from_numpy(types),
                     attention_mask=torch.from_numpy(~pad).long())
    np.testing.assert_allclose(seq[~pad], want.last_hidden_state.numpy()[~pad], atol=ATOL, rtol=0)
    np.testing.assert_allclose(pooled, want.pooler_output.numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_tinyllama_half_precision_folder(tmp_path, dtype):
    """A bf16/fp16 checkpoint is widened exactly: equal to the rounded model, near the float32 one."""
    torch.manual_seed(2)
    config = transformers.LlamaConfig(**llama_config())
    original = perturb(transformers.LlamaForCausalLM(config))
    toks = tokens()
    full = causal_lm_logits(original, toks)
    rounded = save(original, tmp_path / "hf", dtype)
    out = tmp_path / "llama.onnx"
    flashc_cli("compile", SPECS / "tinyllama.flash", "--target", "onnx", "-o", out, "--weights", tmp_path / "hf",
               *sets(**LLAMA_SIZES))
    got = run_onnx(out, {"tokens": toks})[0]
    np.testing.assert_allclose(got, causal_lm_logits(rounded, toks), atol=ATOL, rtol=0)
    assert np.abs(got - full).max() <= 2e-2 * np.abs(full).max()


def test_sharded_folder_and_torch_module(tmp_path):
    """Shards + model.safetensors.index.json; to_torch(weights=FOLDER) reads the same way."""
    torch.manual_seed(3)
    model = save(perturb(transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama_config()))), tmp_path / "hf",
                 max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    spec = flashc.load(SPECS / "tinyllama.flash", **LLAMA_SIZES)
    toks = tokens(seed=3)
    with torch.no_grad():
        got = spec.to_torch(weights=tmp_path / "hf").eval()(torch.from_numpy(toks)).numpy()
    np.testing.assert_allclose(got, causal_lm_logits(model, toks), atol=ATOL, rtol=0)
    proto = spec.to_onnx(weights=tmp_path / "hf")
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"tokens": toks})
    np.testing.assert_allclose(got[0], causal_lm_logits(model, toks), atol=ATOL, rtol=0)


def test_mixtral_folder_compiles_through_its_map(tmp_path):
    torch.manual_seed(4)
    config = transformers.MixtralConfig(**llama_config(), num_local_experts=4, num_experts_per_tok=2,
                                        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    model = save(perturb(transformers.MixtralForCausalLM(config)), tmp_path / "hf")
    out = tmp_path / "mixtral.onnx"
    flashc_cli("compile", SPECS / "mixtral.flash", "--target", "onnx", "-o", out, "--weights", tmp_path / "hf",
               *sets(**LLAMA_SIZES, experts=4))
    toks = tokens(seed=4)
    np.testing.assert_allclose(run_onnx(out, {"tokens": toks})[0], causal_lm_logits(model, toks), atol=ATOL, rtol=0)


def test_mistral_folder_compiles_through_its_map(tmp_path):
    torch.manual_seed(10)
    config = transformers.MistralConfig(**llama_config(), sliding_window=3)
    model = save(perturb(transformers.MistralForCausalLM(config)), tmp_path / "hf")
    out = tmp_path / "mistral.onnx"
    flashc_cli("compile", SPECS / "mistral.flash", "--target", "onnx", "-o", out, "--weights", tmp_path / "hf",
               *sets(**LLAMA_SIZES, window=3, eps=1e-5))
    toks = tokens(length=8, seed=10)
    np.testing.assert_allclose(run_onnx(out, {"tokens": toks})[0], causal_lm_logits(model, toks), atol=ATOL, rtol=0)


CLIP_SIZES = dict(vocab=50, ctx=16, text_d=32, text_heads=4, text_ff=64, text_depth=2, size=32, patch=8, vision_d=32,
                  vision_heads=4, vision_ff=64, vision_depth=2, embed=16)


def clip_model() -> nn.Module:
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=50, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
                         max_position_embeddings=16, bos_token_id=0, eos_token_id=49, pad_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                           num_hidden_layers=2), projection_dim=16)
    return perturb(transformers.CLIPModel(config))


def check_clip(model: nn.Module, onnx_path: Path) -> None:
    """Embeddings and both logit matrices; each text ends with its end token, the highest id."""
    ids = tokens(length=6, vocab=49, seed=11)
    ids[:, -1] = 49
    pixels = np.random.default_rng(11).standard_normal((3, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_ids": ids, "pixel_values": pixels})))
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(pixels))
    for name in ("text_embeds", "image_embeds", "logits_per_text", "logits_per_image"):
        np.testing.assert_allclose(got[name], getattr(want, name).numpy(), atol=ATOL, rtol=0, err_msg=name)


def test_clip_folder_compiles_through_its_map(tmp_path):
    """Two towers; `logit_scale` (a scalar) is reshaped to the spec's [1]."""
    torch.manual_seed(11)
    model = save(clip_model(), tmp_path / "hf")
    out = tmp_path / "clip.onnx"
    flashc_cli("compile", SPECS / "clip_vit_b32.flash", "--target", "onnx", "-o", out, "--weights", tmp_path / "hf",
               *sets(**CLIP_SIZES))
    check_clip(model, out)


# --- torchvision layouts ---------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    """torchvision.models.vision_transformer.EncoderBlock's attributes and order of operations."""

    def __init__(self, d: int, heads: int, mlp: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, d), nn.Dropout(0.0))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.self_attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, tokens: int, d: int, heads: int, mlp: int, depth: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.layers = nn.Sequential(OrderedDict((f"encoder_layer_{i}", EncoderBlock(d, heads, mlp)) for i in range(depth)))
        self.ln = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        return self.ln(self.layers(x + self.pos_embedding))


class VisionTransformer(nn.Module):
    """torchvision.models.VisionTransformer's state-dict layout (torchvision is not importable here)."""

    def __init__(self, size=32, patch=8, d=32, heads=4, mlp=64, depth=2, classes=10):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, d, patch, stride=patch)
        self.class_token = nn.Parameter(torch.randn(1, 1, d))
        self.encoder = Encoder((size // patch) ** 2 + 1, d, heads, mlp, depth)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(d, classes)))

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def test_vit_torchvision_state_dict(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    ref = perturb(VisionTransformer())
    path = tmp_path / "vit_b_16.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    out = tmp_path / "vit.onnx"
    r = flashc_cli("compile", SPECS / "vit_b16.flash", "--target", "onnx", "-o", out, "--weights", path,
                   *sets(size=32, patch=8, d=32, heads=4, mlp=64, depth=2, classes=10))
    assert "weights: from" in r.stdout
    image = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(run_onnx(out, {"image": image})[0], want, atol=ATOL, rtol=0)


def test_resnet18_torchvision_pickle(tmp_path):
    """torchvision ships .pth files: read with torch's weights-only loader, names as they are."""
    from test_reference_equivalence import ResNet18
    from test_reference_equivalence import perturb as perturb_stats

    torch.manual_seed(6)
    ref = perturb_stats(ResNet18(width=8, classes=10)).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    out = tmp_path / "resnet.onnx"
    flashc_cli("compile", SPECS / "resnet18.flash", "--target", "onnx", "-o", out, "--weights", path,
               *sets(width=8, size=32, classes=10))
    image = np.random.default_rng(6).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(run_onnx(out, {"image": image})[0], want, atol=ATOL, rtol=0)


# --- flashc new --from-hf ----------------------------------------------------------------------------


def hf_case(family: str):
    """(model, feeds, expected outputs) for a small seeded model of the family."""
    c = llama_config()
    if family == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**c | {"tie_word_embeddings": True}))
    elif family == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**c))
    elif family == "mistral":
        model = transformers.MistralForCausalLM(transformers.MistralConfig(**c, sliding_window=4))
    elif family == "mixtral":
        model = transformers.MixtralForCausalLM(transformers.MixtralConfig(**c, num_local_experts=4))
    elif family == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0,
            activation_function="gelu_new", layer_norm_epsilon=1e-6))
    elif family == "clip":
        return clip_model()
    elif family == "vit":
        model = transformers.ViTForImageClassification(transformers.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, num_labels=10))
    else:
        model = transformers.BertModel(transformers.BertConfig(
            vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=16, type_vocab_size=3))
    return perturb(model)


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "mixtral", "gpt2", "bert", "clip", "vit"])
def test_new_from_hf_then_compile(tmp_path, family):
    torch.manual_seed(7)
    model = save(hf_case(family), tmp_path / "hf")
    spec = tmp_path / "model.flash"
    r = flashc_main("new", "--from-hf", tmp_path / "hf" / "config.json", "-o", spec)
    assert (tmp_path / "model.hf.map").is_file() and "model.hf.map" in r.stdout
    assert flashc_main("fmt", "--check", spec).returncode == 0
    out = tmp_path / "model.onnx"
    flashc_main("compile", spec, "--target", "onnx", "-o", out, "--weights", tmp_path / "hf")
    if family == "clip":
        return check_clip(model, out)
    if family == "vit":
        pixels = np.random.default_rng(8).standard_normal((3, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            want = model(pixel_values=torch.from_numpy(pixels)).logits.numpy()
        return np.testing.assert_allclose(run_onnx(out, {"pixel_values": pixels})[0], want, atol=ATOL, rtol=0)
    toks = tokens(length=9, seed=8)  # longer than mistral's window of 4
    assert flashc.load(spec).parameter_count == sum(p.numel() for p in model.parameters())
    if family == "bert":
        types = np.random.default_rng(8).integers(0, 3, toks.shape)
        pad = np.zeros(toks.shape, dtype=bool)
        pad[1, -3:] = True
        seq, pooled = run_onnx(out, {"tokens": toks, "token_types": types, "padding": pad})
        with torch.no_grad():
            want = model(input_ids=torch.from_numpy(toks), token_type_ids=torch.from_numpy(types),
                         attention_mask=torch.from_numpy(~pad).long())
        np.testing.assert_allclose(seq[~pad], want.last_hidden_state.numpy()[~pad], atol=ATOL, rtol=0)
        np.testing.assert_allclose(pooled, want.pooler_output.numpy(), atol=ATOL, rtol=0)
    else:
        np.testing.assert_allclose(run_onnx(out, {"tokens": toks})[0], causal_lm_logits(model, toks), atol=ATOL, rtol=0)


def test_new_refuses_what_its_template_cannot_express(tmp_path):
    config = transformers.LlamaConfig(**llama_config(), hidden_act="gelu")
    config.save_pretrained(tmp_path)
    r = flashc_main("new", "--from-hf", tmp_path / "config.json", "-o", tmp_path / "m.flash", check=False)
    assert r.returncode == 1 and "hidden_act 'gelu'" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "config.json").write_text('{"model_type": "rwkv"}')
    r = flashc_main("new", "--from-hf", tmp_path / "config.json", "-o", tmp_path / "m.flash", check=False)
    assert r.returncode == 1 and "no template" in r.stderr and "llama" in r.stderr
    assert not (tmp_path / "m.flash").exists()


@pytest.mark.parametrize(("template", "zoo"), [
    ("clip", "clip_vit_b32"), ("t5", "t5_small"), ("whisper", "whisper_tiny")])
def test_templates_are_the_zoo_specs_with_parameters(template, zoo):
    """`new` writes the zoo spec's body and map: only the header comment and the defaults differ."""
    from flashc.hfnew import TEMPLATES

    body = (TEMPLATES / f"{template}.flash").read_text().split("\n")
    spec = (SPECS / f"{zoo}.flash").read_text().split("\n")
    assert body[2:] == spec[next(i for i, line in enumerate(spec) if line.startswith("model ")) + 1:]
    rules = [line for line in (TEMPLATES / f"{template}.hf.map").read_text().split("\n")[1:] if not line.startswith("for")]
    assert rules == [line for line in (SPECS / f"{zoo}.hf.map").read_text().split("\n")[1:] if not line.startswith("for")]


# --- what a map says, and what does not fit --------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.map")), ids=lambda p: p.name)
def test_every_map_names_weights_of_its_spec(path):
    spec = flashc.load(SPECS / f"{path.name.split('.')[0]}.flash")
    wmap = read_map(path)
    wmap.check_targets([*spec.graph.weights, *(a for names in tied_names(spec.graph).values() for a in names)],
                       spec.name)
    assert path in maps_beside(SPECS / f"{path.name.split('.')[0]}.flash")


@pytest.mark.parametrize(("text", "where", "message"), [
    ("a.{i}.w -> b.{j}.w", "1:12", "`{j}` is not in the source"),
    ("a.w -> b.w, c.w", "1:1", "need one `split AXIS` step"),
    ("a.w -> b.w : transpos", "1:14", "unknown step `transpos`"),
    ("strip model", "1:1", "`strip` takes one prefix ending in `.`"),
    ("\nrename a b", "2:1", "expected `SOURCE -> TARGET`"),
    ("a.w -> b.w : split x", "1:14", "`split` takes the axis"),
])
def test_map_syntax_errors_point_at_the_line(text, where, message):
    with pytest.raises(FlashError) as info:
        parse_map(text, "x.hf.map")
    rendered = info.value.render()
    assert rendered.startswith(f"x.hf.map:{where}: error:") and message in rendered, rendered


def test_a_map_target_that_names_no_weight_is_an_error():
    spec = flashc.load(SPECS / "gpt2.flash", depth=1, d=32, heads=4, vocab=50, ctx=16)
    wmap = parse_map("h.{i}.ln_1.{p} -> blocks.{i}.layernorm_9.{p}\n", "g.hf.map")
    with pytest.raises(FlashError, match="names no weight of model GPT2"):
        wmap.check_targets(spec.graph.weights, spec.name)


def test_missing_unexpected_and_misshapen_in_one_error(tmp_path):
    from safetensors.numpy import save_file

    spec = flashc.load(SPECS / "lenet5.flash")
    weights = spec.init_weights(seed=1)
    first, second = sorted(weights)[:2]
    weights.pop(first)
    weights[second] = np.zeros((3, 3), np.float32)
    weights["extra.weight"] = np.zeros(2, np.float32)
    path = tmp_path / "w.safetensors"
    save_file(weights, str(path))
    r = flashc_main("compile", SPECS / "lenet5.flash", "--target", "onnx", "-o", tmp_path / "m.onnx", "--weights", path,
                   check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    for part in (f"`{first}` is missing", "`extra.weight` is unexpected", f"`{second}` has shape [3, 3]",
                 "--allow-missing", "--allow-unexpected"):
        assert part in r.stderr, r.stderr
    weights[second] = spec.init_weights(seed=1)[second]
    save_file(weights, str(path))
    r = flashc_main("compile", SPECS / "lenet5.flash", "--target", "onnx", "-o", tmp_path / "m.onnx", "--weights", path,
                   "--allow-missing", "--allow-unexpected")
    assert f"keep their seeded initial values (seed 0): {first}" in r.stderr and "extra.weight" in r.stderr


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_float_dtypes_convert(tmp_path, dtype):
    from safetensors.numpy import save_file

    spec = flashc.load(SPECS / "lenet5.flash")
    weights = spec.init_weights(seed=2)
    save_file({k: v.astype(dtype) for k, v in weights.items()}, str(tmp_path / "w.safetensors"))
    loaded = spec.open_weights(tmp_path / "w.safetensors")
    for key, value in weights.items():
        assert loaded[key].dtype == np.float32
        np.testing.assert_array_equal(loaded[key], value.astype(dtype).astype(np.float32))


def test_int8_into_float_weights_is_refused(tmp_path):
    from safetensors.numpy import save_file

    spec = flashc.load(SPECS / "lenet5.flash")
    save_file({k: np.zeros(v.shape, np.int8) for k, v in spec.init_weights().items()}, str(tmp_path / "q.safetensors"))
    r = flashc_main("compile", SPECS / "lenet5.flash", "--target", "onnx", "-o", tmp_path / "m.onnx",
                   "--weights", tmp_path / "q.safetensors", check=False)
    assert r.returncode == 1 and "is int8, the spec needs float32" in r.stderr and "dequantize" in r.stderr


def test_two_sources_of_one_weight_must_agree(tmp_path):
    """GPT-2's lm_head.weight maps to the tied name of wte.weight: a copy that differs is refused."""
    torch.manual_seed(9)
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=4, bos_token_id=0,
                                     eos_token_id=0)
    state = {k: v.clone() for k, v in transformers.GPT2LMHeadModel(config).state_dict().items()}
    state["lm_head.weight"] = state["transformer.wte.weight"] + 1
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "g.safetensors"))
    r = flashc_main("compile", SPECS / "gpt2.flash", "--target", "onnx", "-o", tmp_path / "g.onnx",
                   "--weights", tmp_path / "g.safetensors", *sets(vocab=50, ctx=16, d=32, heads=4, depth=1), check=False)
    assert r.returncode == 1 and "different values" in r.stderr, r.stderr


# --- writing weights -----------------------------------------------------------------------------------


def test_init_then_every_output_holds_the_same_weights(tmp_path):
    """`flashc init` = the ONNX target's seeded weights = what the torch source holds after load_model."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    args = sets(depth=1, d=32, heads=4, vocab=50, ctx=16)
    flashc_main("init", SPECS / "gpt2.flash", "-o", tmp_path / "w.safetensors", "--seed", 3, *args)
    with safe_open(str(tmp_path / "w.safetensors"), "np") as f:
        assert "wte.weight" in f.keys() and "linear.weight" not in f.keys()  # a tied tensor once
        assert f.metadata()["weights"] == "seeded initialisation, seed 3"
    r = flashc_main("compile", SPECS / "gpt2.flash", "--target", "onnx", "-o", tmp_path / "a.onnx", "--seed", 3, *args)
    assert "seeded initialisation, seed 3" in r.stdout
    r = flashc_main("compile", SPECS / "gpt2.flash", "--target", "torch", "-o", tmp_path / "gpt2_module.py", *args)
    assert "PyTorch's default initialisation" in r.stdout and "flashc init" in r.stdout
    namespace: dict = {}
    exec(compile((tmp_path / "gpt2_module.py").read_text(), "gpt2_module.py", "exec"), namespace)  # noqa: S102
    module = namespace["GPT2"]().eval()
    load_model(module, str(tmp_path / "w.safetensors"))
    toks = tokens()
    with torch.no_grad():
        want = module(torch.from_numpy(toks)).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "a.onnx", {"tokens": toks})[0], want, atol=1e-5, rtol=0)


def test_save_weights_of_a_trained_module_reads_back(tmp_path):
    spec = flashc.load(SPECS / "gpt2.flash", depth=1, d=32, heads=4, vocab=50, ctx=16)
    module = spec.to_torch(seed=4)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01)
    spec.save_weights(tmp_path / "t.safetensors", module.state_dict())
    again = spec.to_torch(weights=tmp_path / "t.safetensors")
    assert again.linear.weight is again.wte.weight
    for key, value in module.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, atol=0, rtol=0)
    proto = spec.to_onnx(weights=tmp_path / "t.safetensors")
    assert sum(i.name == "wte.weight" for i in proto.graph.initializer) == 1
    spec.save_weights(tmp_path / "copy.safetensors", tmp_path / "t.safetensors")  # a checkpoint path, re-read
    copied = spec.open_weights(tmp_path / "copy.safetensors")
    assert all(np.array_equal(copied[k], module.state_dict()[k].numpy()) for k in spec.graph.weights)


def test_scalar_buffers_round_trip(tmp_path):
    """batchnorm's num_batches_tracked is a 0-d tensor: written and read back as one, not as [1]."""
    spec = flashc.load(SPECS / "resnet18.flash", width=8, size=32, classes=10)
    spec.save_weights(tmp_path / "r.safetensors", seed=2)
    loaded, seeded = spec.open_weights(tmp_path / "r.safetensors"), spec.init_weights(seed=2)
    assert loaded["bn1.num_batches_tracked"].shape == ()
    for key, value in seeded.items():
        assert loaded[key].shape == value.shape and np.array_equal(loaded[key], value), key


def test_a_map_with_a_misspelt_target_fails_at_its_line(tmp_path):
    from safetensors.numpy import save_file

    spec = flashc.load(SPECS / "lenet5.flash")
    weights = spec.init_weights()
    save_file(weights, str(tmp_path / "w.safetensors"))
    first = sorted(weights)[0]
    (tmp_path / "bad.map").write_text(f"# a map\nsomething.{{p}} -> {first.split('.')[0]}x.{{p}}\n")
    r = flashc_main("compile", SPECS / "lenet5.flash", "--target", "onnx", "-o", tmp_path / "m.onnx",
                   "--weights", tmp_path / "w.safetensors", "--map", tmp_path / "bad.map", check=False)
    assert r.returncode == 1 and "bad.map:2:" in r.stderr and "names no weight of model LeNet5" in r.stderr
    assert "did you mean" in r.stderr and "^^^" in r.stderr


def test_a_bf16_folder_compiles_to_onnx_without_torch(tmp_path):
    """The ONNX path reads bfloat16 from the safetensors bytes: torch is never imported."""
    from safetensors.torch import save_file

    spec = flashc.load(SPECS / "tinyllama.flash", **LLAMA_SIZES)
    state = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in spec.init_weights(seed=1).items()}
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({f"model.{k}" if k != "lm_head.weight" else k: v for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    argv = ["compile", str(SPECS / "tinyllama.flash"), "--target", "onnx", "-o", str(tmp_path / "m.onnx"),
            "--weights", str(folder), *sets(**LLAMA_SIZES)]
    code = ("import sys, flashc.cli\n"
            f"assert flashc.cli.main({argv!r}) == 0\n"
            "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    (got,) = run_onnx(tmp_path / "m.onnx", {"tokens": tokens()})
    with torch.no_grad():
        want = spec.to_torch(weights={k: v.float() for k, v in state.items()}).eval()(torch.from_numpy(tokens())).numpy()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
