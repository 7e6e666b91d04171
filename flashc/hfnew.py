"""`flashc new --from-hf config.json`: a readable spec and its checkpoint map from a Hugging Face config.

Each supported family is a template pair in flashc/templates/ (`llama.flash`, `llama.hf.map`)
with the same layer names as the zoo spec of that family, and a table here that says which
config keys become which spec parameters. Options that change the structure (tied output
projection, biases, a sliding window) become settings in the generated text; anything the
template cannot express (another activation, scaled rotary embeddings) is an error that
names the config key, never a silently different model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from flashc.diagnostics import Span, error

TEMPLATES = Path(__file__).parent / "templates"
Config = dict[str, Any]


@dataclass(frozen=True)
class Family:
    """A template, the config keys of its parameters, and how its optional parts are filled in."""

    template: str
    params: tuple[tuple[str, Callable[[Config], Any]], ...]
    parts: Callable[[Config], dict[str, str]]
    about: str


def key(name: str, default: Any = None) -> Callable[[Config], Any]:
    """The config's value at ``name`` (dots go into sub-configs: `text_config.vocab_size`)."""

    def get(config: Config) -> Any:
        *outer, last = name.split(".")
        for part in outer:
            config = config.get(part) or {}
        if last in config and config[last] is not None:
            return config[last]
        if default is None:
            raise KeyError(name)
        return default(config) if callable(default) else default

    return get


def rope_theta(config: Config) -> float:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", None):
        raise ValueError(f"rope_type {kind!r}: only unscaled rotary embeddings are supported")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    return float(theta)


def activation(config: Config, name: str, allowed: dict[str, str]) -> str:
    act = config.get(name, next(iter(allowed)))
    if act not in allowed:
        raise ValueError(f"{name} {act!r}: the template supports {', '.join(allowed)}")
    return allowed[act]


def decoder_parts(config: Config, qkv_bias: bool = False) -> dict[str, str]:
    """Settings of LLaMA-like decoders: head size, biases, window, tied output projection."""
    activation(config, "hidden_act", {"silu": "silu"})
    attention = []
    d, heads = config["hidden_size"], config["num_attention_heads"]
    if config.get("head_dim") not in (None, d // heads):
        attention.append(f"head_dim = {int(config['head_dim'])}")
    bias = bool(config.get("attention_bias", False))
    if qkv_bias and not bias:
        attention.append("qkv_bias, out_bias = false")
    else:
        attention.append(f"bias = {str(bias).lower()}")
    window = config.get("sliding_window")
    if window is not None and config.get("use_sliding_window", True):
        attention.append(f"window = {int(window)}")
    tied = bool(config.get("tie_word_embeddings", False))
    return {"attention": "".join(f", {a}" for a in attention), "lm_head": ", weight = embed_tokens.weight" if tied else "",
            "mlp_bias": str(bool(config.get("mlp_bias", False))).lower()}


DECODER = (("vocab", key("vocab_size")), ("d", key("hidden_size")), ("heads", key("num_attention_heads")),
           ("kv_heads", key("num_key_value_heads", lambda c: c["num_attention_heads"])),
           ("ff", key("intermediate_size")), ("depth", key("num_hidden_layers")), ("theta", rope_theta),
           ("eps", key("rms_norm_eps", 1e-6)))

def clip_parts(config: Config) -> dict[str, str]:
    for tower in ("text_config", "vision_config"):
        activation(config.get(tower) or {}, "hidden_act", {"quick_gelu": "quick_gelu"})
    text, vision = (config.get(t) or {} for t in ("text_config", "vision_config"))
    if text.get("layer_norm_eps", 1e-5) != vision.get("layer_norm_eps", 1e-5):
        raise ValueError("the towers' layer_norm_eps differ; the template has one eps")
    return {}


CLIP = tuple((name, key(path, default)) for name, path, default in (
    ("vocab", "text_config.vocab_size", 49408), ("ctx", "text_config.max_position_embeddings", 77),
    ("text_d", "text_config.hidden_size", 512), ("text_heads", "text_config.num_attention_heads", 8),
    ("text_ff", "text_config.intermediate_size", 2048), ("text_depth", "text_config.num_hidden_layers", 12),
    ("size", "vision_config.image_size", 224), ("patch", "vision_config.patch_size", 32),
    ("vision_d", "vision_config.hidden_size", 768), ("vision_heads", "vision_config.num_attention_heads", 12),
    ("vision_ff", "vision_config.intermediate_size", 3072), ("vision_depth", "vision_config.num_hidden_layers", 12),
    ("embed", "projection_dim", 512), ("eps", "text_config.layer_norm_eps", 1e-5)))

def t5_parts(config: Config) -> dict[str, str]:
    """T5 v1.0 (t5-small ... t5-11b): ReLU feed-forward, one depth, the output tied to `shared`."""
    activation(config, "feed_forward_proj", {"relu": "relu"})
    if not config.get("tie_word_embeddings", True):
        raise ValueError("tie_word_embeddings false: the template ties the output projection to `shared`")
    if config.get("num_decoder_layers") not in (None, config.get("num_layers")):
        raise ValueError("num_decoder_layers differs from num_layers: the template has one depth")
    return {}


T5 = (("vocab", key("vocab_size")), ("d", key("d_model")), ("d_kv", key("d_kv")), ("heads", key("num_heads")),
      ("ff", key("d_ff")), ("depth", key("num_layers")), ("buckets", key("relative_attention_num_buckets", 32)),
      ("max_distance", key("relative_attention_max_distance", 128)), ("eps", key("layer_norm_epsilon", 1e-6)))


def whisper_parts(config: Config) -> dict[str, str]:
    """Whisper: gelu, unscaled embeddings, the same heads and MLP width in encoder and decoder."""
    activation(config, "activation_function", {"gelu": "gelu"})
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if config.get(a) != config.get(b):
            raise ValueError(f"{a} and {b} differ: the template has one of each")
    if config.get("scale_embedding"):
        raise ValueError("scale_embedding true: the template does not scale the token embeddings")
    return {}


WHISPER = (("vocab", key("vocab_size")), ("mels", key("num_mel_bins", 80)), ("d", key("d_model")),
           ("heads", key("encoder_attention_heads")), ("ff", key("encoder_ffn_dim")),
           ("encoder_depth", key("encoder_layers")), ("decoder_depth", key("decoder_layers")),
           ("audio_ctx", key("max_source_positions", 1500)), ("text_ctx", key("max_target_positions", 448)),
           ("eps", lambda c: 1e-5))  # nn.LayerNorm's default, which Whisper keeps

FAMILIES: dict[str, Family] = {
    "llama": Family("llama", DECODER, decoder_parts, "LLaMA: grouped-query attention, rotary, RMSNorm, SiLU-gated MLP"),
    "mistral": Family("llama", DECODER, decoder_parts, "Mistral: LLaMA with a sliding attention window"),
    "qwen2": Family("llama", DECODER, lambda c: decoder_parts(c, qkv_bias=True),
                    "Qwen2: LLaMA with biases on the q, k, v projections"),
    "mixtral": Family("mixtral", DECODER + (("experts", key("num_local_experts")), ("k", key("num_experts_per_tok"))),
                      decoder_parts, "Mixtral: a LLaMA-like decoder whose MLP is a sparse mixture of experts"),
    "gpt2": Family("gpt2", (("vocab", key("vocab_size")), ("ctx", key("n_positions")), ("d", key("n_embd")),
                            ("heads", key("n_head")), ("ff", key("n_inner", lambda c: 4 * c["n_embd"])),
                            ("depth", key("n_layer")), ("eps", key("layer_norm_epsilon", 1e-5))),
                   lambda c: {"activation": activation(c, "activation_function", {
                       "gelu_new": 'gelu(approximate = "tanh")', "gelu_pytorch_tanh": 'gelu(approximate = "tanh")',
                       "gelu": "gelu", "relu": "relu"})},
                   "GPT-2: learned positions, pre-norm decoder, output tied to the token embedding"),
    "bert": Family("bert", (("vocab", key("vocab_size")), ("ctx", key("max_position_embeddings")),
                            ("types", key("type_vocab_size", 2)), ("d", key("hidden_size")),
                            ("heads", key("num_attention_heads")), ("ff", key("intermediate_size")),
                            ("depth", key("num_hidden_layers")), ("eps", key("layer_norm_eps", 1e-12))),
                   lambda c: {"activation": activation(c, "hidden_act", {
                       "gelu": "gelu", "gelu_new": 'gelu(approximate = "tanh")', "relu": "relu"})},
                   "BERT: post-norm encoder with a tanh pooler on the first token"),
    "vit": Family("vit", (("size", key("image_size", 224)), ("patch", key("patch_size", 16)),
                          ("channels", key("num_channels", 3)), ("d", key("hidden_size")),
                          ("heads", key("num_attention_heads")), ("mlp", key("intermediate_size")),
                          ("depth", key("num_hidden_layers")), ("eps", key("layer_norm_eps", 1e-12)),
                          ("classes", lambda c: len(c.get("id2label") or {}) or c.get("num_labels") or 2)),
                  lambda c: {"activation": activation(c, "hidden_act", {"gelu": "gelu",
                                                                        "gelu_new": 'gelu(approximate = "tanh")'}),
                             "qkv_bias": str(bool(c.get("qkv_bias", True))).lower()},
                  "ViT: patches by a strided conv, a class token, pre-norm encoder, a classifier on the class token"),
    "t5": Family("t5", T5, t5_parts, "T5: encoder-decoder with relative position buckets, RMS norms, a tied and "
                 "rescaled output projection"),
    "whisper": Family("whisper", WHISPER, whisper_parts, "Whisper: a conv audio front end, encoder-decoder, the "
                      "output tied to the token embedding"),
    "clip": Family("clip", CLIP, clip_parts, "CLIP: text and vision towers, projected, compared by a learned "
                   "temperature (the text feature is taken at the highest token id, the end token)"),
}


def spec_value(value: Any) -> str:
    """A parameter default as .flash text: whole numbers stay whole, floats keep a point."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text:  # 1e-06 -> 1e-6
            mantissa, exponent = text.split("e")
            return f"{mantissa}e{int(exponent)}"
        return text if any(c in text for c in ".n") else text + ".0"
    raise ValueError(f"{value!r} is not a number")


def read_config(path: Path) -> Config:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(Span.nowhere(str(path)), "no such config file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(Span.nowhere(str(path)), f"not a readable config.json: {exc}") from None
    if not isinstance(config, dict):
        raise error(Span.nowhere(str(path)), "not a Hugging Face config: expected a JSON object")
    return config


def model_name(config: Config, family: str) -> str:
    arch = (config.get("architectures") or [""])[0]
    return arch if re.fullmatch(r"[A-Z][A-Za-z0-9]*", arch or "") else family.capitalize()


def new_spec(config_path: str | Path, out: str | Path) -> tuple[str, str]:
    """The spec text and map text for the config at ``config_path`` (the spec to be written at ``out``)."""
    path = Path(config_path)
    if path.is_dir():
        path = path / "config.json"
    config = read_config(path)
    kind = config.get("model_type")
    if kind not in FAMILIES:
        raise error(Span.nowhere(str(path)), f"model_type {kind!r} has no template",
                    f"supported: {', '.join(sorted(FAMILIES))}")
    family = FAMILIES[kind]
    try:
        params = [(name, get(config)) for name, get in family.params]
        parts = family.parts(config)
        text = ", ".join(f"{name} = {spec_value(value)}" for name, value in params)
    except KeyError as exc:
        raise error(Span.nowhere(str(path)), f"the config has no `{exc.args[0]}`, which a {kind} spec needs") from None
    except ValueError as exc:
        raise error(Span.nowhere(str(path)), f"cannot express this {kind} config: {exc}") from None
    architectures = " ".join(config.get("architectures") or []) or model_name(config, kind)
    header = (f"# {family.about}.\n# Written by `flashc new --from-hf {path}`: the config's values are the parameters "
              f"below;\n# {Path(out).with_suffix('').name}.hf.map beside this file reads its checkpoints "
              f"(`flashc compile {Path(out).name} --weights {path.parent}`).")
    spec = Template((TEMPLATES / f"{family.template}.flash").read_text(encoding="utf-8")).substitute(
        header=header, name=model_name(config, kind), params=text, **parts)
    wmap = Template((TEMPLATES / f"{family.template}.hf.map").read_text(encoding="utf-8")).substitute(
        architectures=architectures, spec=Path(out).name)
    return spec, wmap


def map_path(out: str | Path) -> Path:
    """Where the map of a generated spec goes: `model.flash` -> `model.hf.map`."""
    p = Path(out)
    return p.with_name(f"{p.stem}.hf.map")
