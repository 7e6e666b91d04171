"""Every kind of diagnostic: exact line:col, message, hint, and the caret that render() draws.

Each test writes a small spec inline. Positions are 1-based; ``render()`` prints
``file:line:col: error: message``, the source line indented by four spaces, a caret
line whose first ``^`` sits under column ``col``, and ``  hint: ...`` when there is one.
"""

from __future__ import annotations

import pytest

import flashc
from flashc import FlashError
from flashc.diagnostics import Diagnostic

FILE = "x.flash"

# A one-input model; statements follow on line 3.
HEAD = "model M(d = 4) {\n  input x: float32[B, 4]\n"

# A model with one output `y` and one target `label`; train statements follow on line 7.
TRAIN_HEAD = (
    "model M() {\n"  # 1
    "  input x: float32[B, 4]\n"  # 2
    "  output y = x |> linear(3)\n"  # 3
    "}\n"  # 4
    "train M {\n"  # 5
    "  target label: int64[B]\n"  # 6
)


def fail(src: str, **overrides) -> FlashError:
    with pytest.raises(FlashError) as info:
        flashc.loads(src, file=FILE, **overrides)
    err = info.value
    assert err.diagnostics, "a FlashError must carry at least one diagnostic"
    return err


def only(src: str, **overrides) -> Diagnostic:
    """The single diagnostic of a spec that has exactly one problem."""
    err = fail(src, **overrides)
    assert len(err.diagnostics) == 1, [d.message for d in err.diagnostics]
    return err.diagnostics[0]


def check(src: str, line: int, col: int, message: str, hint: str | None = None, **overrides) -> Diagnostic:
    """Exactly one diagnostic, at line:col, with this message and hint, rendered with a caret there."""
    err = fail(src, **overrides)
    assert len(err.diagnostics) == 1, [d.message for d in err.diagnostics]
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (line, col), (d.span, d.message)
    assert d.message == message
    assert d.hint == hint
    assert_rendered(err.render(), src, d)
    return d


def assert_rendered(rendered: str, src: str, d: Diagnostic) -> None:
    """render() of one diagnostic: header, source line, caret under the column, hint."""
    lines = rendered.splitlines()
    header = f"{FILE}:{d.span.line}:{d.span.col}: error: {d.message}"
    assert header in lines, rendered
    i = lines.index(header)
    source_line = src.split("\n")[d.span.line - 1]
    assert lines[i + 1] == "    " + source_line
    caret = lines[i + 2]
    assert set(caret.strip()) == {"^"}, caret
    assert caret.index("^") == 4 + d.span.col - 1, rendered
    if d.hint is not None:
        assert lines[i + 3] == f"  hint: {d.hint}"


# --- syntax errors --------------------------------------------------------------------------------

def test_unclosed_call_names_where_it_was_opened():
    src = HEAD + "  output y = x |> linear(3\n}\n"
    check(src, 4, 1, "expected `)` to close the call opened at 3:25, found `}`")


def test_missing_colon_in_input():
    src = "model M() {\n  input x float32[B, 4]\n  output y = x\n}\n"
    d = check(src, 2, 11, "unexpected `float32`; expected `:`", "an input needs a type: `input x: float32[B, 4]`")
    assert (d.span.end_line, d.span.end_col) == (2, 18)  # the whole offending token


def test_equals_instead_of_colon_in_input():
    src = "model M() {\n  input x = float32[B, 4]\n  output y = x\n}\n"
    check(src, 2, 11, "unexpected `=`; expected `:`", "an input is declared as `input x: float32[B, 4]`")


def test_single_quote_is_an_unexpected_character_with_a_hint():
    src = HEAD + "  output y = x |> gelu(approximate = 'tanh')\n}\n"
    check(src, 3, 38, "unexpected character `'`", 'strings use double quotes: "..."')


def test_dollar_is_an_unexpected_character():
    src = HEAD + "  output y = x $ 2\n}\n"
    check(src, 3, 16, "unexpected character `$`")


def test_single_bar_hints_at_the_pipeline_operator():
    src = HEAD + "  output y = x | relu\n}\n"
    check(src, 3, 16, "unexpected character `|`", "`|>` is the pipeline operator")


def test_unexpected_end_of_file_inside_a_block():
    src = "model M() {\n  input x: float32[B, 4]\n  output y = x |> relu\n"
    # points just past the end of the last line
    check(src, 3, 23, "expected `}` to close the block opened at 1:11, found end of file")


def test_unexpected_end_of_file_after_a_keyword():
    check("model", 1, 6, "unexpected end of file; expected a name")


def test_unexpected_end_of_file_in_an_unclosed_call():
    src = "model M() {\n  input x: float32[B, 4]\n  output y = x |> linear(3"
    check(src, 3, 27, "expected `)` to close the call opened at 3:25, found end of file")


def test_a_layer_without_a_pipe_hints_at_the_pipe():
    src = HEAD + "  h = x relu(3)\n  output y = h\n}\n"
    check(
        src, 3, 13, "unexpected `(`; expected `,` or `=`",
        "a statement is `name = expression`; to apply a layer to a value, chain it with `|>`",
    )


def test_empty_file_has_no_model():
    check("# nothing here\n", 1, 1, "no model in this file", "a spec starts with `model Name(...) { ... }`")


# --- names ------------------------------------------------------------------------------------------

def test_unknown_layer_did_you_mean():
    src = HEAD + "  output y = x |> lnear(3)\n}\n"
    d = check(src, 3, 19, "undefined name `lnear`", "did you mean `linear`?")
    assert d.span.end_col == 24  # the caret covers the whole name
    assert "    " + " " * 18 + "^^^^^\n" in fail(src).render() + "\n"


def test_unknown_keyword_argument_did_you_mean():
    src = HEAD + "  output y = x |> linear(10, bais = false)\n}\n"
    check(src, 3, 30, "`linear` has no argument `bais`", "did you mean `bias`?")


def test_undefined_variable_did_you_mean():
    src = HEAD + "  h = x |> linear(3)\n  output y = hh |> relu\n}\n"
    check(src, 4, 14, "undefined name `hh`", "did you mean `h`?")


def test_undefined_variable_without_a_close_name_has_no_hint():
    src = HEAD + "  output y = x |> relu(qqqqqq)\n}\n"
    check(src, 3, 24, "undefined name `qqqqqq`")


def test_unknown_dtype_did_you_mean():
    # `x` is never used: an unknown dtype on a used input is covered by the bug report
    src = "model M() {\n  input x: flaot32[B, 4]\n  input z: float32[B, 4]\n  output y = z |> relu\n}\n"
    check(src, 2, 12, "unknown dtype `flaot32`", "did you mean `float32`?")


def test_unknown_dtype_of_a_train_target():
    src = TRAIN_HEAD + "  loss mse(y, y)\n  optimizer adam\n  target t: int46[B]\n}\n"
    check(src, 9, 13, "unknown dtype `int46`", "did you mean `int64`?")


# --- shapes -----------------------------------------------------------------------------------------

def test_add_of_mismatched_shapes_states_both_shapes():
    src = "model M() {\n  input a: float32[B, 3]\n  input b: float32[B, 4]\n  output y = a + b\n}\n"
    d = check(
        src, 4, 14, "`add` cannot broadcast [B, 3] with [B, 4]",
        "the shapes must match, or one of them must be 1, axis by axis from the right",
    )
    assert d.span.end_col == 19  # `a + b`


def test_conv2d_on_a_rank_2_input():
    src = "model M() {\n  input a: float32[B, 3]\n  output y = a |> conv2d(4, kernel = 3)\n}\n"
    check(src, 3, 19, "`conv2d` expects a float image [B, C, H, W], got float32[B, 3]", "reshape the input to [B, C, H, W]")


def test_attention_heads_must_divide_the_width():
    src = "model M() {\n  input a: float32[B, T, 10]\n  output y = a |> attention(3)\n}\n"
    check(src, 3, 19, "attention: heads=3 must divide the width 10",
          "or give `head_dim` (then q, k, v project to heads * head_dim features)")


def test_reshape_with_the_wrong_element_count():
    src = "model M() {\n  input a: float32[2, 3, 4]\n  output y = a |> reshape((5, 3))\n}\n"
    check(src, 3, 19, "cannot reshape [2, 3, 4] (24 elements) into [5, 3] (15 elements)")


def test_reshape_keyword_with_the_wrong_element_count():
    src = "model M() {\n  input a: float32[2, 3, 4]\n  output y = a |> reshape(shape = (6, 5))\n}\n"
    check(src, 3, 19, "cannot reshape [2, 3, 4] (24 elements) into [6, 5] (30 elements)")


def test_reshape_positional_dims_with_the_wrong_element_count():
    src = "model M() {\n  input a: float32[2, 3, 4]\n  output y = a |> reshape(6, 5)\n}\n"
    check(src, 3, 19, "cannot reshape [2, 3, 4] (24 elements) into [6, 5] (30 elements)")


def test_reshape_with_a_symbolic_batch_and_the_wrong_element_count():
    src = "model M() {\n  input a: float32[B, 3, 4]\n  output y = a |> reshape(B, 5)\n}\n"
    check(src, 3, 19, "cannot reshape [B, 3, 4] (12 * B elements) into [B, 5] (5 * B elements)")


def test_linear_on_an_image_works_on_the_last_axis():
    spec = flashc.loads("model M() {\n  input x: float32[B, 28, 28]\n  output y = x |> linear(10)\n}\n")
    assert spec.outputs == {"y": "float32[B, 28, 10]"}


def test_linear_on_integer_ids_hints_at_embedding():
    src = "model M() {\n  input t: int64[B, T]\n  output y = t |> linear(3)\n}\n"
    check(src, 3, 19, "linear needs a float tensor, got int64[B, T]", "embed integer ids with `embedding`")


# --- arguments --------------------------------------------------------------------------------------

def test_wrong_argument_type():
    src = HEAD + '  output y = x |> linear("a")\n}\n'
    check(src, 3, 26, "`linear` out_features must be a whole number, got the string 'a'")


def test_missing_required_argument():
    src = HEAD + "  output y = x |> linear\n}\n"
    check(src, 3, 19, "`linear` needs `out_features` (size of the output's last axis)")


def test_bad_choice_did_you_mean():
    src = HEAD + '  output y = x |> gelu(approximate = "tahn")\n}\n'
    check(src, 3, 24, "`gelu` approximate must be one of 'none', 'tanh', got 'tahn'", "did you mean `tanh`?")


def test_keyword_given_twice():
    src = HEAD + "  output y = x |> linear(3, bias = true, bias = false)\n}\n"
    check(src, 3, 42, "keyword `bias` given twice")


# --- model parameters and overrides -----------------------------------------------------------------

def test_unknown_override_did_you_mean():
    src = HEAD + "  output y = x |> linear(d)\n}\n"
    check(src, 1, 1, "unknown parameter `dd` for model M", "did you mean `d`?", dd=3)


def test_unknown_override_lists_the_parameters():
    src = HEAD + "  output y = x |> linear(d)\n}\n"
    check(src, 1, 1, "unknown parameter `zzzzzz` for model M", "the parameters of M are: d", zzzzzz=3)


@pytest.mark.parametrize("value", ["abc", 2.5, True, None, (1, 2)])
def test_bad_override_type(value):
    src = HEAD + "  output y = x |> linear(d)\n}\n"
    check(
        src, 1, 9, f"cannot set `d` to {value!r}: it is the number 4, so the new value must be of the same kind",
        d=value,
    )


def test_good_override_is_applied():
    src = HEAD + "  output y = x |> linear(d)\n}\n"
    assert flashc.loads(src, d=7).outputs == {"y": "float32[B, 7]"}


# --- outputs ----------------------------------------------------------------------------------------

def test_duplicate_output():
    src = HEAD + "  output y = x |> linear(3)\n  output y = x |> linear(2)\n}\n"
    check(src, 4, 3, "output `y` is declared twice")


def test_no_output():
    src = HEAD + "  y = x |> linear(3)\n}\n"
    check(src, 1, 1, "model M declares no output", "add `output y = ...`")


def test_output_must_be_a_tensor():
    src = HEAD + "  output y = 3\n}\n"
    check(src, 3, 3, "output `y` must be a tensor, got the number 3")


# --- the train section ------------------------------------------------------------------------------

def test_unknown_optimizer_did_you_mean():
    src = TRAIN_HEAD + "  loss cross_entropy(y, label)\n  optimizer adamx(lr = 0.1)\n}\n"
    err = fail(src)
    # Only the diagnostic for `adamx` is asserted; a second, spurious "no `optimizer`"
    # diagnostic is reported as a bug.
    [d] = [d for d in err.diagnostics if "adamx" in d.message]
    assert (d.span.line, d.span.col) == (8, 13)
    assert d.message == "unknown optimizer `adamx`"
    assert d.hint == "did you mean `adam`?"
    assert_rendered(err.render(), src, d)


def test_unknown_loss_did_you_mean():
    src = TRAIN_HEAD + "  loss cross_entropie(y, label)\n  optimizer adam\n}\n"
    check(src, 7, 8, "unknown loss `cross_entropie`", "did you mean `cross_entropy`?")


def test_loss_reading_an_unknown_tensor():
    src = TRAIN_HEAD + "  loss cross_entropy(yy, label)\n  optimizer adam\n}\n"
    check(src, 7, 22, "`cross_entropy` reads model outputs, inputs or targets; `yy` is none of them", "did you mean `y`?")


def test_loss_with_too_few_tensors():
    src = TRAIN_HEAD + "  loss cross_entropy(y)\n  optimizer adam\n}\n"
    check(src, 7, 8, "`cross_entropy` needs 2 tensors, got 1")


def test_regularize_pattern_matching_no_parameter():
    src = TRAIN_HEAD + '  loss cross_entropy(y, label)\n  optimizer adam\n  regularize l2(1e-4) on "nomatch*"\n}\n'
    check(src, 9, 3, "'nomatch*' matches no parameter", "parameters look like 'linear.weight'")


def test_batch_zero():
    src = TRAIN_HEAD + "  loss cross_entropy(y, label)\n  optimizer adam\n  batch 0\n}\n"
    check(
        src, 9, 9, "`batch` must be a whole number >= 1, got 0",
        "`batch full` (batch GD), `batch N` (mini-batch) or `batch 1` (stochastic)",
    )


def test_unknown_setting_did_you_mean():
    src = TRAIN_HEAD + "  loss cross_entropy(y, label)\n  optimizer adam\n  epoks 3\n}\n"
    check(src, 9, 3, "unknown train setting `epoks`", "did you mean `epochs`?")


def test_missing_loss():
    src = TRAIN_HEAD + "  optimizer adam\n}\n"
    check(src, 5, 1, "the train section has no `loss`")


def test_missing_optimizer():
    src = TRAIN_HEAD + "  loss cross_entropy(y, label)\n}\n"
    check(src, 5, 1, "the train section has no `optimizer`", "e.g. `optimizer sgd(lr = 0.1, momentum = 0.9)`")


def test_train_section_for_an_unknown_model():
    src = TRAIN_HEAD.replace("train M", "train Mm") + "  loss mse(y, y)\n  optimizer adam\n}\n"
    check(src, 5, 7, "train section names unknown model Mm", "did you mean `M`?")


def test_valid_train_section_is_accepted():
    src = TRAIN_HEAD + '  loss cross_entropy(y, label)\n  optimizer adam\n  regularize l2(1e-4) on "*.weight"\n}\n'
    spec = flashc.loads(src)
    assert spec.train.optimizer.name == "adam"


# --- several errors, no cascades ----------------------------------------------------------------------

def test_several_independent_errors_are_reported_together_in_line_order():
    src = (
        "model M() {\n"
        "  input x: float32[B, 4]\n"
        "  a = x |> lnear(3)\n"
        "  b = x |> linear(3, bais = true)\n"
        "  c = x |> relu(zz)\n"
        "  output y = a + b + c\n"
        "}\n"
    )
    err = fail(src)
    got = [(d.span.line, d.span.col, d.message) for d in err.diagnostics]
    assert got == [
        (3, 12, "undefined name `lnear`"),
        (4, 22, "`linear` has no argument `bais`"),
        (5, 17, "undefined name `zz`"),
    ]
    rendered = err.render()
    headers = [line for line in rendered.splitlines() if line.startswith(f"{FILE}:")]
    assert headers == [f"{FILE}:{line}:{col}: error: {msg}" for line, col, msg in got]
    for d in err.diagnostics:
        assert_rendered(rendered, src, d)


def test_errors_are_sorted_by_position_whatever_the_order_found():
    # the override problem is found first but sits at 1:1; the statement error at 3:19
    src = HEAD + "  output y = x |> lnear(d)\n}\n"
    err = fail(src, dd=3)
    assert [(d.span.line, d.span.col) for d in err.diagnostics] == [(1, 1), (3, 19)]


def test_several_train_errors_are_reported_together():
    src = TRAIN_HEAD + "  loss cross_entropy(y, label)\n  optimizer adam\n  batch 0\n  epoks 3\n  schedule cosin\n}\n"
    err = fail(src)
    assert [(d.span.line, d.span.col, d.message) for d in err.diagnostics] == [
        (9, 9, "`batch` must be a whole number >= 1, got 0"),
        (10, 3, "unknown train setting `epoks`"),
        (11, 12, "unknown schedule `cosin`"),
    ]


def test_a_failed_variable_does_not_cascade():
    src = (
        "model M() {\n"
        "  input x: float32[B, 4]\n"
        "  a = x |> lnear(3)\n"
        "  b = a |> relu\n"
        "  c = a + b\n"
        "  output y = c |> linear(2)\n"
        "}\n"
    )
    d = only(src)
    assert (d.span.line, d.span.col, d.message) == (3, 12, "undefined name `lnear`")


def test_a_failed_output_does_not_cascade():
    src = HEAD + "  output y = x |> lnear(3)\n  output z = y |> relu\n}\n"
    d = only(src)
    assert (d.span.line, d.span.col) == (3, 19)


def test_a_failed_model_parameter_does_not_cascade():
    src = "model M(d = nope) {\n  input x: float32[B, 4]\n  output y = x |> linear(d)\n}\n"
    d = only(src)
    assert (d.span.line, d.span.col, d.message) == (1, 13, "undefined name `nope`")


def test_an_error_inside_a_repeated_block_is_reported_once():
    src = (
        "model M() {\n"
        "  input x: float32[B, 4]\n"
        "  block D(x) {\n"
        "    return x |> lnear(3)\n"
        "  }\n"
        "  output y = x |> repeat(3, D)\n"
        "}\n"
    )
    d = only(src)
    assert (d.span.line, d.span.col) == (4, 17)


# --- files --------------------------------------------------------------------------------------------

def test_non_utf8_file_is_a_flash_error(tmp_path):
    path = tmp_path / "bad.flash"
    path.write_bytes(b"model M() {\n  input x: float32[B, 4]  # \xff\xfe\n}\n")
    with pytest.raises(FlashError) as info:
        flashc.load(path)
    [d] = info.value.diagnostics
    assert d.message == "the file is not valid UTF-8 text"
    assert (d.span.line, d.span.col) == (2, 29)
    assert info.value.render().startswith(f"{path}:2:29: error: the file is not valid UTF-8 text")


def test_non_utf8_first_bytes(tmp_path):
    path = tmp_path / "bom.flash"
    path.write_bytes(b"\xff\xfemodel M() {}")
    with pytest.raises(FlashError) as info:
        flashc.load(path)
    [d] = info.value.diagnostics
    assert (d.span.line, d.span.col, d.message) == (1, 1, "the file is not valid UTF-8 text")


def test_missing_file_is_a_flash_error(tmp_path):
    path = tmp_path / "nope.flash"
    with pytest.raises(FlashError) as info:
        flashc.load(path)
    [d] = info.value.diagnostics
    assert d.message == f"no such file: {path}"
    assert info.value.render() == f"{path}:1:1: error: no such file: {path}"


def test_directory_is_a_flash_error(tmp_path):
    with pytest.raises(FlashError) as info:
        flashc.load(tmp_path)
    [d] = info.value.diagnostics
    assert d.message == f"{tmp_path} is a directory, not a .flash file"


def test_load_reports_positions_in_the_named_file(tmp_path):
    path = tmp_path / "m.flash"
    src = HEAD + "  output y = x |> lnear(3)\n}\n"
    path.write_text(src, encoding="utf-8")
    with pytest.raises(FlashError) as info:
        flashc.load(path)
    rendered = info.value.render().splitlines()
    assert rendered[0] == f"{path}:3:19: error: undefined name `lnear`"
    assert rendered[1] == "      output y = x |> lnear(3)"
    assert rendered[2] == "    " + " " * 18 + "^^^^^"
    assert rendered[3] == "  hint: did you mean `linear`?"


def test_import_of_a_missing_file(tmp_path):
    path = tmp_path / "m.flash"
    path.write_text('from "lib.flash" import Block\n' + HEAD + "  output y = x\n}\n", encoding="utf-8")
    with pytest.raises(FlashError) as info:
        flashc.load(path)
    [d] = info.value.diagnostics
    assert (d.span.line, d.span.col) == (1, 1)
    assert d.message.startswith("cannot import lib.flash: no such file")


def test_import_of_an_unknown_block_did_you_mean(tmp_path):
    (tmp_path / "lib.flash").write_text(
        "model L() {\n  input x: float32[B, 4]\n  block Decoder(x) {\n    return x\n  }\n  output y = x\n}\n",
        encoding="utf-8",
    )
    path = tmp_path / "m.flash"
    path.write_text('from "lib.flash" import Decodr\n' + HEAD + "  output y = x\n}\n", encoding="utf-8")
    with pytest.raises(FlashError) as info:
        flashc.load(path)
    [d] = info.value.diagnostics
    assert (d.span.line, d.span.col, d.message, d.hint) == (1, 25, "lib.flash has no block `Decodr`", "did you mean `Decoder`?")
