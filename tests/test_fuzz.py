"""Property tests: whatever the input, the front end raises nothing but FlashError.

Three sources of input, all derandomized so a run is reproducible:
(a) the real specs of specs/ mutated (characters deleted, duplicated, swapped, grammar
tokens inserted, the text cut short), (b) arbitrary text, (c) random parameter overrides
as `--set` would pass them. Every FlashError must carry diagnostics with line, col >= 1
and render without raising.
"""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import flashc
from flashc import FlashError
from flashc.syntax import parse

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
# GPT-2 with its 12 blocks cut to 2: a mutation that adds a digit to `depth` would
# otherwise build hundreds of blocks and make single examples take seconds.
SPECS = {
    p.stem: p.read_text(encoding="utf-8").replace("depth = 12", "depth = 2")
    for p in sorted(SPECS_DIR.glob("*.flash"))
}
# every spec's model parameters, read with the parser so a new spec is fuzzed too
PARAMS = {name: [p.name for p in parse(text).models[0].params] for name, text in SPECS.items()}

# loads()'s own keyword arguments cannot name a model parameter
LOADS_ARGS = {"file"}

FUZZ = settings(derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    "(", ")", "[", "]", "{", "}", "|>", "|", "=", ",", ":", ".", "+", "-", "*", "/", "//", "#", '"', "'", "$",
    "0", "1", "2", "-1", "0.5", "1e3", "1_000", ".5", "99999999999999999999",
    "x", "h", "B", "T", "d", "tokens", "image", "logits", "label", "wte", "Decoder", "weight",
    "linear", "conv2d", "attention", "repeat", "reshape", "embedding", "layernorm", "dropout", "flatten",
    "positions", "relu", "mean", "concat", "softmax", "avg_pool2d",
    "model", "block", "input", "output", "return", "train", "target", "loss", "optimizer", "schedule",
    "batch", "epochs", "regularize", "on", "import", "from", "early_stop",
    "true", "false", "full", "shared", "causal", "bias", "kernel", "axis",
    '"s"', '"*.weight"', '"\\n"', "float32", "int64", "bool", "flaot32",
    "\n", " ", "\t", "\r\n", "é", "\u2028", "\x00",
]


def assert_clean(err: FlashError) -> None:
    assert err.diagnostics, "a FlashError must carry diagnostics"
    for d in err.diagnostics:
        assert d.span.line >= 1 and d.span.col >= 1, d
        assert isinstance(d.message, str) and d.message
    text = err.render()
    assert isinstance(text, str) and text
    str(err)  # the exception's own string form must not raise either


def front_end(text: str, **overrides) -> None:
    """Load ``text``; only FlashError may escape, and it must be well formed."""
    try:
        flashc.loads(text, file="fuzz.flash", **overrides)
    except FlashError as err:
        assert_clean(err)


@st.composite
def mutated_spec(draw) -> str:
    text = draw(st.sampled_from(sorted(SPECS.values())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "insert_spaced", "truncate", "delete_run"]))
        i = draw(st.integers(0, len(text)))
        if kind == "delete" and text:
            i = min(i, len(text) - 1)
            text = text[:i] + text[i + 1:]
        elif kind == "delete_run":
            text = text[:i] + text[i + draw(st.integers(1, 30)):]
        elif kind == "duplicate":
            j = min(len(text), i + draw(st.integers(1, 12)))
            text = text[:i] + text[i:j] * 2 + text[j:]
        elif kind == "swap" and len(text) >= 2:
            i, j = sorted((min(i, len(text) - 1), draw(st.integers(0, len(text) - 1))))
            if i != j:
                text = text[:i] + text[j] + text[i + 1:j] + text[i] + text[j + 1:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == "insert_spaced":
            text = text[:i] + " " + draw(st.sampled_from(TOKENS)) + " " + text[i:]
        elif kind == "truncate":
            text = text[:i]
    return text


def test_the_unmutated_specs_load():
    for name, text in SPECS.items():
        spec = flashc.loads(text, file=f"{name}.flash")
        assert spec.parameter_count > 0


@FUZZ
@given(mutated_spec())
def test_mutated_specs_raise_only_flash_errors(text):
    front_end(text)


@FUZZ
@given(st.text())
def test_arbitrary_text_raises_only_flash_errors(text):
    front_end(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_token_soup_raises_only_flash_errors(text):
    front_end(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_token_soup_inside_a_model_body_raises_only_flash_errors(body):
    front_end("model M(d = 4, p = 0.1) {\n  input x: float32[B, T, 8]\n  input t: int64[B, T]\n"
              f"  {body}\n  output y = x\n}}\n")


def override_values():
    return st.one_of(
        st.integers(-8, 64),
        st.sampled_from([0, -1, 10**12, 2**63, -(2**63)]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=8),
        st.binary(max_size=4),
        st.tuples(st.integers(-4, 4), st.floats(allow_nan=False)),
        st.lists(st.integers(0, 4), max_size=3),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    )


@st.composite
def overrides(draw) -> tuple[str, dict]:
    name = draw(st.sampled_from(sorted(SPECS)))
    keys = st.one_of(st.sampled_from(PARAMS[name]), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True))
    keys = keys.filter(lambda k: k not in LOADS_ARGS)
    sets = draw(st.dictionaries(keys, override_values(), max_size=3))
    for key, value in sets.items():
        # a very deep stack is slow to build, not wrong: keep the repeat counts small
        if key == "depth" and isinstance(value, int) and not isinstance(value, bool):
            assume(value <= 64)
    return name, sets


@FUZZ
@given(overrides())
def test_random_overrides_raise_only_flash_errors(case):
    name, sets = case
    front_end(SPECS[name], **sets)


@FUZZ
@given(st.sampled_from(sorted(SPECS)), st.text(min_size=1, max_size=10).filter(lambda k: k not in LOADS_ARGS),
       st.text(max_size=10))
def test_set_style_string_overrides_raise_only_flash_errors(name, key, raw):
    """As `--set KEY=RAW` delivers them: the CLI's own value parser, then load."""
    from flashc.cli import parse_value

    value = parse_value(raw)
    if key in PARAMS[name] and key == "depth" and isinstance(value, int) and not isinstance(value, bool):
        assume(value <= 64)
    if isinstance(value, float) and not math.isfinite(value):
        value = raw  # still exercised below as a string
    front_end(SPECS[name], **{key: value})


def test_seeded_mutation_fuzz_has_no_traceback_hang_or_leak():
    """tests/fuzz.py's generator, bounded for CI (`python -m tests.fuzz --cases 100000` is the long run):
    hostile imports, self-applying blocks, deep nesting, long chains and extreme overrides included.
    Each case runs in a worker with a time limit, so a hang fails this test instead of stalling it."""
    from fuzz import fuzz

    report = fuzz(cases=500, seed=2026, workers=2, timeout=30)
    counts = report["counts"]
    bad = {k: report["examples"][k][:2] for k in ("traceback", "hang", "malformed", "leak") if counts[k]}
    assert not bad, bad
    assert counts["clean_error"] > 0 and counts["success"] > 0, counts  # both kinds of input are exercised
