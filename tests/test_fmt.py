"""`flashc fmt`: one canonical layout, idempotent, comments kept, only whitespace changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import flashc
from flashc.build import build
from flashc.cli import main
from flashc.diagnostics import FlashError
from flashc.fmt import check_same_tokens, format_checked, format_source

ROOT = Path(__file__).resolve().parent.parent
REPO_SPECS = sorted([*ROOT.glob("specs/*.flash"), *ROOT.glob("examples/**/*.flash")])

MESSY = "# header   \n" + """import   "lib.flash"
from "lib.flash" import A,B
model   M( a=1 ,b = -2,
  c=(1,2) ){


    input x :float32[ B , 4 ]   # the input
        # a note
  block F( y , k=3 ){ return y|>linear( k )  }
  h = x |> linear(4*a+-b) |> F(k = - 3)
     |> relu  # tail
  z = f(
        h,
    g( h ,
  1),
  )


  output y=h # out
}
train M {
    loss cross_entropy( y , t )
  optimizer sgd(lr=0.1)
  regularize l2(1e-4) on "*.weight","*.bias"
}
"""

CANONICAL = """# header
import "lib.flash"
from "lib.flash" import A, B
model M(a = 1, b = -2,
    c = (1, 2)) {
  input x: float32[B, 4]  # the input
  # a note
  block F(y, k = 3) { return y |> linear(k) }
  h = x |> linear(4 * a + -b) |> F(k = -3)
    |> relu  # tail
  z = f(
      h,
      g(h,
          1),
  )

  output y = h  # out
}

train M {
  loss       cross_entropy(y, t)
  optimizer  sgd(lr = 0.1)
  regularize l2(1e-4) on "*.weight", "*.bias"
}
"""


def comments(text: str) -> list[str]:
    return [m.group(0).rstrip() for m in re.finditer(r"#[^\n]*", text)]


def test_the_canonical_layout():
    assert format_source(MESSY) == CANONICAL


def test_formatting_is_idempotent_and_keeps_comments():
    once = format_source(MESSY)
    assert format_source(once) == once
    assert comments(once) == comments(MESSY)


def test_trailing_comments_of_consecutive_lines_line_up():
    src = "model M {\n  input x: float32[B, 4]  # in\n  y = x |> linear(4) # a\n  output z = y |> relu     # b\n}\n"
    lines = format_source(src).splitlines()
    assert {line.index("#") for line in lines[1:4]} == {len("  input x: float32[B, 4]") + 2}


def test_a_blank_line_breaks_comment_alignment_and_blank_runs_collapse():
    src = "model M {\n  input x: float32[B, 4]  # in\n\n\n\n  output z = x |> linear(44444444)  # long\n}\n"
    out = format_source(src)
    assert out == "model M {\n  input x: float32[B, 4]  # in\n\n  output z = x |> linear(44444444)  # long\n}\n"


def test_crlf_and_tabs_become_lf_and_spaces():
    src = "model M {\r\n\tinput x: float32[B, 4]\r\n\toutput y = x\r\n}\r\n"
    assert format_source(src) == "model M {\n  input x: float32[B, 4]\n  output y = x\n}\n"


def test_a_syntax_error_is_reported_not_formatted():
    with pytest.raises(FlashError) as info:
        format_source("model M {\n  input x: float32[B, 4\n}\n", "bad.flash")
    assert info.value.render().startswith("bad.flash:3:1: error:")


def test_only_whitespace_may_change():
    with pytest.raises(FlashError, match="more than whitespace"):
        check_same_tokens("model M { output y = x }", "model M { output y = z }", "m.flash")


@pytest.mark.parametrize("path", REPO_SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_spec_in_the_repo_is_formatted(path):
    text = path.read_text(encoding="utf-8")
    assert format_checked(text, str(path)) == text, f"run: flashc fmt {path.relative_to(ROOT)}"


@pytest.mark.parametrize("path", REPO_SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_formatting_a_spec_keeps_its_model(path):
    """fmt(fmt(x)) == fmt(x), and the formatted spec builds to the same graph (on a messed-up copy too)."""
    text = path.read_text(encoding="utf-8")
    messy = re.sub(r"(?m)^( +)", lambda m: "\t" + " " * (len(m.group(1)) % 3), text).replace(", ", " ,  ")
    once = format_checked(messy, str(path))
    assert format_source(once) == once
    a = flashc.load(path).graph
    b = flashc.api.Spec(build(once, str(path), {}, base=path.parent), str(path)).graph  # imports resolve alike
    assert b.parameter_count == a.parameter_count
    assert [(n, str(v.type)) for n, v in b.outputs] == [(n, str(v.type)) for n, v in a.outputs]
    assert list(b.weights) == list(a.weights)


def test_cli_check_prints_a_diff_and_exits_1(tmp_path, capsys):
    spec = tmp_path / "m.flash"
    spec.write_text(MESSY, encoding="utf-8")
    assert main(["fmt", "--check", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"--- {spec}\n+++ {spec} (formatted)\n")
    assert "+  optimizer  sgd(lr = 0.1)" in out
    assert "1 file(s) would be reformatted" in err
    assert spec.read_text() == MESSY


def test_cli_formats_in_place_then_check_passes(tmp_path, capsys):
    spec = tmp_path / "m.flash"
    spec.write_text(MESSY, encoding="utf-8")
    assert main(["fmt", str(spec)]) == 0
    assert spec.read_text() == CANONICAL
    assert f"reformatted {spec}" in capsys.readouterr().err
    assert main(["fmt", "--check", str(spec)]) == 0
    assert capsys.readouterr() == ("", "")
    assert [p.name for p in tmp_path.iterdir()] == ["m.flash"]


def test_cli_reports_a_bad_file_and_formats_the_others(tmp_path, capsys):
    bad, good = tmp_path / "bad.flash", tmp_path / "good.flash"
    bad.write_text("model M {\n  input x: float32[B, 4\n}\n")
    good.write_text(MESSY)
    assert main(["fmt", str(bad), str(good)]) == 1
    assert f"{bad}:3:1: error:" in capsys.readouterr().err
    assert good.read_text() == CANONICAL
