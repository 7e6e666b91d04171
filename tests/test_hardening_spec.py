"""Hostile specs (issue 10, items 1-4): every case the audit found ends in a clean
`file:line:col` error, fast, quoting nothing but spec files; nothing recurses without end.

1. imports confined to the spec's folder (and --include / include=), .flash regular files
   under a size limit, each parsed once;
2. self-applying blocks named as cycles; 100,000-stage pipelines and sums;
3. depth, work and weight-memory limits, checked before the work;
4. Python keywords, builtins and nn.Module attribute names; non-finite numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flashc
from flashc import FlashError
from flashc.build import limits, source
from flashc.syntax import ast, parse

ROOT = Path(__file__).resolve().parent.parent
GPT2 = ROOT / "specs" / "gpt2.flash"
BODY = "model M() {{\n  input x: float32[B, 4]\n{body}\n}}\n"


def cli(*args: str | Path, cwd: Path = ROOT, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flashc.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, **(env or {})})


def failure(text: str, **overrides) -> FlashError:
    with pytest.raises(FlashError) as info:
        flashc.loads(text, file="t.flash", **overrides)
    err = info.value
    for d in err.diagnostics:  # a position in the spec, a message
        assert d.span.file == "t.flash" and d.span.line >= 1 and d.span.col >= 1 and d.message
    return err


def message(text: str, **overrides) -> str:
    return str(failure(text, **overrides))


# --- 1. imports ----------------------------------------------------------------------------

def spec_importing(folder: Path, path: str) -> Path:
    spec = folder / "m.flash"
    spec.write_text(f'import "{path}"\n' + BODY.format(body="  output y = x |> Up"))
    return spec


LIBRARY = BODY.format(body="  block Up(x) {\n    return x |> relu\n  }\n  output y = x |> Up")


@pytest.mark.parametrize("path", ["/proc/self/environ", "../../etc/passwd", "/dev/zero", "/etc/passwd"])
def test_import_of_a_system_file_is_refused_without_reading_it(tmp_path, path):
    spec = spec_importing(tmp_path, path)
    done = cli("check", spec, env={"FLASHC_TEST_SECRET": "s3cret-value"}, timeout=30)  # /dev/zero: no hang
    assert done.returncode == 1
    assert f"cannot import {path}: only .flash files can be imported" in done.stderr
    assert "s3cret-value" not in done.stderr + done.stdout and "root:" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_non_spec_file_given_as_the_spec_is_not_quoted(tmp_path):
    secret = tmp_path / "credentials.txt"
    secret.write_text("api_token_8c1f = hunter2\n")
    done = cli("check", secret)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "credentials.txt:1:1: error: syntax error: this does not read as a flash spec" in done.stderr
    assert "api_token_8c1f" not in done.stderr and "hunter2" not in done.stderr


def test_import_outside_the_folder_is_refused_even_as_a_flash_file(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "lib.flash").write_text(LIBRARY)
    (tmp_path / "proj").mkdir()
    spec = spec_importing(tmp_path / "proj", "../other/lib.flash")
    with pytest.raises(FlashError, match="it is outside the spec's folder") as info:
        flashc.load(spec)
    assert info.value.diagnostics[0].span.line == 1
    assert flashc.load(spec, include=[tmp_path / "other"]).graph.nodes  # an explicit include folder
    done = cli("check", spec, "--include", tmp_path / "other")
    assert done.returncode == 0, done.stderr


def test_absolute_import_inside_the_folder_is_fine(tmp_path):
    (tmp_path / "lib.flash").write_text(LIBRARY)
    assert flashc.load(spec_importing(tmp_path, str(tmp_path / "lib.flash"))).graph.nodes


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "secret.flash").write_text("model S() { input x: float32[B, 4]\n  output y = x }  # SECRET\n")
    (tmp_path / "proj" / "lib.flash").symlink_to(tmp_path / "secret.flash")
    (tmp_path / "proj" / "passwd.flash").symlink_to("/etc/passwd")
    for name in ("lib.flash", "passwd.flash"):
        text = message_of_load(spec_importing(tmp_path / "proj", name))
        assert "outside the spec's folder" in text and "SECRET" not in text and "root:" not in text


def message_of_load(spec: Path) -> str:
    with pytest.raises(FlashError) as info:
        flashc.load(spec)
    return str(info.value)


def test_import_of_a_fifo_or_a_folder_named_flash_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "pipe.flash")
    (tmp_path / "dir.flash").mkdir()
    assert "it is not a regular file" in message_of_load(spec_importing(tmp_path, "pipe.flash"))
    assert "it is not a regular file" in message_of_load(spec_importing(tmp_path, "dir.flash"))


def test_import_above_the_size_limit_is_refused(tmp_path):
    (tmp_path / "big.flash").write_text("#" * (source.MAX_SPEC_BYTES + 1))
    assert f"above the limit of {source.MAX_SPEC_BYTES:,}" in message_of_load(spec_importing(tmp_path, "big.flash"))


def test_spec_file_above_the_size_limit_is_refused(tmp_path):
    (tmp_path / "big.flash").write_text(LIBRARY + "#" * source.MAX_SPEC_BYTES)
    assert "larger than" in message_of_load(tmp_path / "big.flash")


def test_invalid_utf8_import_points_into_it_quoting_nothing(tmp_path):
    (tmp_path / "lib.flash").write_bytes(b"model L() {\n  # caf\xe9 SECRET\n}\n")
    text = message_of_load(spec_importing(tmp_path, "lib.flash"))
    assert "lib.flash:2:" in text and "not valid UTF-8" in text and "SECRET" not in text


def test_import_diamond_parses_each_file_once(tmp_path, monkeypatch):
    levels = 16  # was 2**16 parses: each file imported twice by the one above it
    for i in range(levels):
        imports = f'import "f{i + 1}.flash"\nimport "f{i + 1}.flash"\n' if i + 1 < levels else ""
        (tmp_path / f"f{i}.flash").write_text(
            imports + f"model F{i}() {{\n  input x: float32[B, 4]\n  block B{i}(x) {{\n    return x |> relu\n  }}\n"
            f"  output y = x |> B{i}\n}}\n")
    parsed: list[str] = []
    real = source.parse
    monkeypatch.setattr(source, "parse", lambda text, file: parsed.append(file) or real(text, file))
    spec = flashc.load(tmp_path / "f0.flash")
    assert spec.graph.nodes
    assert sorted(parsed) == sorted(str((tmp_path / f"f{i}.flash").resolve()) for i in range(1, levels))


def test_import_cycle_is_an_error(tmp_path):
    (tmp_path / "a.flash").write_text('import "b.flash"\n' + LIBRARY)
    (tmp_path / "b.flash").write_text('import "a.flash"\n' + LIBRARY.replace("Up", "Down"))
    assert "import cycle" in message_of_load(tmp_path / "a.flash")


# --- 2. recursion --------------------------------------------------------------------------

SELF = {
    "directly": "  block A(x) {\n    return x |> A\n  }\n  output y = x |> A",
    "mutually": "  block A(x) {\n    return x |> B\n  }\n  block B(x) {\n    return x |> relu |> A\n  }\n  output y = x |> A",
    "through repeat": "  block A(x) {\n    return x |> repeat(2, A)\n  }\n  output y = x |> A",
    "through sequential": "  block A(x) {\n    return x |> sequential(relu, A)\n  }\n  output y = x |> A",
    "through a named instance": "  block A(x) {\n    return x |> a\n  }\n  a = A\n  output y = x |> a",
}
CYCLES = {"directly": "A -> A", "mutually": "A -> B -> A", "through repeat": "A -> A",
          "through sequential": "A -> A", "through a named instance": "A -> A"}


@pytest.mark.parametrize("how", sorted(SELF))
def test_block_applying_itself_is_an_error_naming_the_cycle(how):
    err = failure(BODY.format(body=SELF[how]))
    assert len(err.diagnostics) == 1
    d = err.diagnostics[0]
    assert d.message == f"block A applies itself: {CYCLES[how]}"
    assert d.span.line >= 3  # at the application that closes the cycle


def test_a_block_nested_in_itself_as_an_argument_is_finite_and_builds():
    body = ("  block Residual(x, f) {\n    return x + (x |> f)\n  }\n"
            "  output y = x |> Residual(f = Residual(f = linear(4)))")
    assert len(flashc.loads(BODY.format(body=body)).graph.nodes) == 3


def test_recursion_with_changing_arguments_ends_at_the_depth_limit():
    body = "  block A(x, n) {\n    return x |> A(n - 1)\n  }\n  output y = x |> A(3)"
    assert f"nest more than {limits.MAX_DEPTH} levels deep" in message(BODY.format(body=body))


def test_pipeline_of_100000_stages_parses_without_recursion():
    module = parse(BODY.format(body="  output y = x" + " |> relu" * 100_000))
    e, stages = module.models[0].body[-1].value, 0
    while isinstance(e, ast.Pipe):
        e, stages = e.left, stages + 1
    assert stages == 100_000


def test_sum_of_100000_terms_builds():
    spec = flashc.loads("model M(d = 1" + " + 1" * 100_000 + ") {\n  input x: float32[B, 4]\n"
                        "  output y = x |> linear(d)\n}\n")
    assert spec.graph.params["d"] == 100_001
    assert spec.parameter_count == 100_001 * 5


def test_long_tensor_pipelines_and_sums_build_one_node_per_stage():
    stages = 5_000
    assert len(flashc.loads(BODY.format(body="  output y = x" + " |> relu" * stages)).graph.nodes) == stages
    assert len(flashc.loads(BODY.format(body="  output y = x" + " + x" * stages)).graph.nodes) == stages


@pytest.mark.parametrize("text", [
    "  output y = " + "(" * 5000 + "x" + ")" * 5000 + " |> " + "relu(" * 200 + "x" + ")" * 200,
    "  output y = " + "relu(" * 200 + "x" + ")" * 200,
    "  output y = x |> linear(" + "-" * 500 + "3)",
    "  t = " + "(" * 300 + "1" + ",)" * 300 + "\n  output y = x",
])
def test_deep_nesting_is_a_clean_error(text):
    assert "levels deep" in message(BODY.format(body=text))


def test_deep_chain_of_distinct_blocks_is_a_clean_error():
    blocks = "".join(f"  block B{i}(x) {{\n    return x |> B{i + 1}\n  }}\n" for i in range(300))
    body = blocks + "  block B300(x) {\n    return x |> relu\n  }\n  output y = x |> B0"
    assert f"nest more than {limits.MAX_DEPTH} levels deep" in message(BODY.format(body=body))


def test_nesting_within_the_limits_builds():
    blocks = "".join(f"  block B{i}(x) {{\n    return relu(relu(x |> B{i + 1}))\n  }}\n" for i in range(12))
    body = blocks + "  block B12(x) {\n    return x |> relu\n  }\n  output y = x |> B0"
    assert len(flashc.loads(BODY.format(body=body)).graph.nodes) == 12 * 2 + 1


# --- 3. limits before work -----------------------------------------------------------------

def test_many_outputs_take_linear_time_and_huge_ranks_are_refused():
    outputs = "".join(f"  output y{i} = x |> relu\n" for i in range(3000))  # was quadratic: 20,000 took 2 minutes
    assert len(flashc.loads(BODY.format(body=outputs)).graph.outputs) == 3000
    rank = limits.MAX_RANK + 1
    dims = ", ".join(["1"] * rank)
    assert f"rank {rank} is above the limit" in message(f"model M() {{\n  input x: float32[{dims}]\n  output y = x\n}}\n")
    assert f"`reshape` gives a tensor of rank {rank}" in message(BODY.format(
        body="  output y = x |> reshape(" + "1, " * (rank - 1) + "4)"))


def test_huge_repeat_count_is_refused_before_building():
    text = message(BODY.format(body="  block B(x) {\n    return x |> relu\n  }\n  output y = x |> repeat(1000000000, B)"))
    assert f"repeat count 1,000,000,000 is above the limit of {limits.MAX_WORK:,}" in text


def test_op_counts_are_refused_before_the_op_loops_over_them():
    """Found by the fuzzer: lstm_lm with depth = 10**12 looped over 10**12 layers inside the op."""
    text = message((ROOT / "specs" / "lstm_lm.flash").read_text(), depth=10**12)
    assert "`lstm` layers must be at most 10,000, got 1,000,000,000,000" in text
    chunked = "model M() {\n  input x: float32[B, 1000000000]\n  a, b = x |> chunk(1000000000)\n  output y = a\n}\n"
    assert "`chunk` n must be at most 10,000" in message(chunked)


def test_nested_repeats_are_refused_after_one_copy():
    body = ("  block C(x) {\n    return x |> relu\n  }\n  block B(x) {\n    return x |> repeat(1000, C)\n  }\n"
            "  output y = x |> repeat(1000, B)")
    text = message(BODY.format(body=body))
    assert "repeat(1,000, B) would need about 2,001,000" in text and f"limit of {limits.MAX_WORK:,}" in text


@pytest.mark.parametrize("value", ["1000000000", "10**9"])
def test_set_depth_to_a_billion_does_not_hang_check(value):
    done = cli("check", GPT2, "--set", f"depth={value}", timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error:" in done.stderr


def test_a_trillion_wide_layer_is_refused_at_check_with_the_number_and_the_budget():
    for d in ("1000000000000", "10**12"):
        text = message(f"model M(d = {d}) {{\n  input x: float32[B, 4]\n  output y = x |> linear(d)\n}}\n")
        assert "`linear.weight` [1000000000000, 4] has 4,000,000,000,000 parameters (14.6 TiB), more than" in text
        assert "holds at once" in text and limits.BUDGET_ENV in text


def test_gpt2_with_a_trillion_wide_embedding_fails_check_on_the_command_line():
    done = cli("check", GPT2, "--set", "d=1000000000000", "--set", "heads=1", timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "`wte.weight` [50257, 1000000000000] has 50,257,000,000,000,000 parameters" in done.stderr
    assert "holds at once" in done.stderr


def test_the_budget_is_set_by_the_environment(monkeypatch):
    text = BODY.format(body="  output y = x |> linear(1000)")  # 5,000 parameters, 20,000 bytes
    monkeypatch.setenv(limits.BUDGET_ENV, "12K")
    assert "(15.6 KiB), more than 12.0 KiB (FLASHC_MAX_BYTES=12K) holds at once" in message(text)
    three = BODY.format(body="  output y = x |> linear(300) |> linear(300) |> linear(300)")  # no weight over 360,000 B
    monkeypatch.setenv(limits.BUDGET_ENV, "500K")
    assert ("with `linear_2.weight` (90,000 parameters) the weights reach 710.2 KiB, above the budget of 500.0 KiB "
            "(FLASHC_MAX_BYTES=500K)") in message(three)
    monkeypatch.setenv(limits.BUDGET_ENV, "1M")
    assert flashc.loads(text).parameter_count == 5_000
    monkeypatch.setenv(limits.BUDGET_ENV, "lots")
    with pytest.raises(FlashError, match="cannot read FLASHC_MAX_BYTES='lots'"):
        flashc.loads(text)


def test_default_budget_each_weight_in_memory_all_of_them_at_least_a_tebibyte(monkeypatch):
    monkeypatch.delenv(limits.BUDGET_ENV, raising=False)
    budget = limits.weight_budget()
    assert (budget.tensor, budget.tensor_origin) == (limits.machine_memory(), "this machine's memory")
    assert budget.total == max(2**40, budget.tensor)


def test_a_large_real_model_checks_on_a_small_machine(monkeypatch):
    """GPT-2 at 48 layers of width 1600 (1.5 billion parameters, 6 GiB) with 1 GiB per weight allowed."""
    monkeypatch.setattr(limits, "machine_memory", lambda: 2**30)
    spec = flashc.load(GPT2, depth=48, d=1600, heads=25)
    assert spec.parameter_count > 1_500_000_000


# --- 4. names and numbers ------------------------------------------------------------------

KEYWORD_CASES = {
    "layer": "  lambda = linear(3)\n  output y = x |> lambda",
    "block": "  block class(x) {\n    return x\n  }\n  output y = x |> class",
    "None block": "  block None(x) {\n    return x\n  }\n  output y = x |> None",
    "tensor": "  def = x |> relu\n  output y = def",
    "block parameter": "  block B(x, if) {\n    return x\n  }\n  output y = x |> B(1)",
    "output": "  output return = x",
}


@pytest.mark.parametrize("where", sorted(KEYWORD_CASES))
def test_python_keywords_are_refused_as_names(where):
    assert "is a Python keyword" in message(BODY.format(body=KEYWORD_CASES[where]))


def test_keyword_model_and_parameter_names_are_refused():
    assert "`class` is a Python keyword" in message("model class() {\n  input x: float32[B]\n  output y = x\n}\n")
    assert "`lambda` is a Python keyword" in message("model M(lambda = 2) {\n  input x: float32[B]\n  output y = x\n}\n")


@pytest.mark.parametrize("name", ["__class__", "__init__", "_modules", "_parameters", "__dict__", "training",
                                  "forward", "parameters", "state_dict", "compile", "register_forward_hook"])
def test_module_attribute_names_are_refused_for_layers(name):
    text = message(BODY.format(body=f"  {name} = linear(3)\n  output y = x |> {name}"))
    assert f"`{name}` cannot name a layer" in text


@pytest.mark.parametrize("name", ["__init__", "_Hidden"])
def test_underscore_block_names_are_refused(name):
    text = message(BODY.format(body=f"  block {name}(x) {{\n    return x |> linear(3)\n  }}\n  output y = x |> {name}"))
    assert f"`{name}` cannot name a block" in text


def test_layer_passed_to_a_block_parameter_with_a_module_name_is_refused():
    body = "  block B(x, training) {\n    return x |> training\n  }\n  output y = x |> B(linear(3))"
    assert "`training` cannot name a layer" in message(BODY.format(body=body))


def test_builtin_model_and_input_names_are_refused():
    assert "would shadow Python's builtin `object`" in message("model object() {\n  input x: float32[B]\n  output y = x\n}\n")
    assert "would shadow Python's builtin `zip`" in message("model M() {\n  input zip: float32[B]\n  output y = zip\n}\n")


def test_block_named_like_a_module_method_is_renamed_where_its_weights_go():
    spec = flashc.loads(BODY.format(body="  block forward(x) {\n    return x |> linear(3)\n  }\n  output y = x |> forward"))
    assert list(spec.graph.weights) == ["forward_block.linear.weight", "forward_block.linear.bias"]


def test_tensor_named_like_a_builtin_is_renamed_in_generated_code_only():
    torch = pytest.importorskip("torch")
    spec = flashc.loads(BODY.format(body="  zip = x |> relu\n  len = zip |> linear(2)\n  output y = len |> relu"))
    model = spec.to_torch()
    assert "zip_1 = " in spec.torch_source() and "len_1 = " in spec.torch_source()
    assert model(torch.ones(1, 4)).shape == (1, 2)


def test_module_attrs_cover_every_public_nn_module_attribute():
    """Asked of torch alone, in a fresh interpreter: other libraries add their own (`smart_apply`)."""
    pytest.importorskip("torch")
    from flashc.build.scope import MODULE_ATTRS

    names = subprocess.run([sys.executable, "-c", "import torch; m = torch.nn.Module; print(' '.join("
                            "n for n in {*dir(m), *vars(m())} if not n.startswith('_')))"],
                           capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert len(names) > 40 and set(names) <= MODULE_ATTRS


@pytest.mark.parametrize("alpha", ["1e999", "1e308 * 10", "-1e999"])
def test_non_finite_hyperparameter_literals_are_refused(alpha):
    text = message(f"model M(alpha = {alpha}) {{\n  input x: float32[B, 4]\n  output y = x |> leaky_relu(alpha)\n}}\n")
    assert "too large" in text or "not finite" in text


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), (1.0, float("nan")), 2**64])
def test_non_finite_or_oversized_overrides_are_refused(value):
    text = "model M(alpha = 0.1, pair = (1.0, 2.0), n = 3) {\n  input x: float32[B, 4]\n  output y = x |> leaky_relu(alpha)\n}\n"
    key = "pair" if isinstance(value, tuple) else "n" if isinstance(value, int) else "alpha"
    assert f"cannot set `{key}`" in message(text, **{key: value})


def test_non_finite_set_on_the_command_line_is_refused(tmp_path):
    spec = tmp_path / "m.flash"
    spec.write_text("model M(alpha = 0.1) {\n  input x: float32[B, 4]\n  output y = x |> leaky_relu(alpha)\n}\n")
    for raw in ("inf", "nan", "1e999"):
        done = cli("check", spec, "--set", f"alpha={raw}")
        assert done.returncode == 1 and "not finite" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("expr", "words"), [("10 ** 1232000", "does not fit in 64 bits"),
                                             ("2 ** 1000000000", "does not fit in 64 bits"),
                                             ("1e300 ** 2", "too large"), ("2 ** 63", "does not fit in 64 bits")])
def test_powers_that_do_not_fit_are_refused_before_they_are_computed(expr, words):
    """Found by the fuzzer: `vocab = 10 ** 1232000` built a 1.2-million-digit number, then a traceback."""
    assert words in message(f"model M(d = {expr}) {{\n  input x: float32[B]\n  output y = x\n}}\n")


def test_whole_numbers_must_fit_64_bits():
    assert "below 2**63" in message("model M(d = 99999999999999999999) {\n  input x: float32[B]\n  output y = x\n}\n")
