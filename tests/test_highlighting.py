"""The TextMate grammar of editors/vscode/ read against the specs: a small tokenizer with Python's `re`
(the grammar keeps to what Oniguruma and `re` share) scopes every character of every code line,
every token class shows up somewhere, and every keyword of the Lark grammar is highlighted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((EXTENSION / "syntaxes" / "flash.tmLanguage.json").read_text())
SPECS = sorted([*ROOT.glob("specs/*.flash"), *ROOT.glob("examples/**/*.flash")])
PATTERNS = [(re.compile(p["match"]), p) for p in GRAMMAR["patterns"]]


def scopes_of(pattern: dict) -> list[str]:
    names = [pattern["name"]] if "name" in pattern else []
    return names + [c["name"] for c in pattern.get("captures", {}).values()]


def tokenize(line: str) -> list[tuple[int, int, list[str]]]:
    """TextMate's rule for top-level `match` patterns: at each point the earliest match wins, ties by order."""
    out, pos = [], 0
    while pos < len(line):
        best = None
        for regex, pattern in PATTERNS:
            m = regex.search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                best = (m, pattern)
        if best is None:
            break
        m, pattern = best
        out.append((m.start(), m.end(), scopes_of(pattern)))
        pos = m.end()
    return out


def unscoped(line: str) -> str:
    covered = [False] * len(line)
    for start, end, _ in tokenize(line):
        covered[start:end] = [True] * (end - start)
    return "".join(ch for ch, c in zip(line, covered) if not c and not ch.isspace())


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_no_code_line_is_left_unscoped(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            assert unscoped(line) == "", f"{path.name}:{number}: {line}"


def test_every_token_class_appears_in_the_specs():
    seen = {s for path in SPECS for line in path.read_text().splitlines() for _, _, scopes in tokenize(line) for s in scopes}
    declared = {s for _, p in PATTERNS for s in scopes_of(p)}
    missing = declared - seen - {"keyword.operator.word.flash"}  # and/or/not: checked on the line below
    assert missing == set()
    assert {s for _, _, sc in tokenize("m = not (a and b) or c") for s in sc} >= {"keyword.operator.word.flash"}


def test_tokens_get_the_scopes_meant_for_them():
    line = 'output logits = h |> linear(vocab, bias = false, weight = wte.weight) # tied "x"'
    got = {line[s:e]: scopes for s, e, scopes in tokenize(line)}
    assert got["output"] == ["keyword.control.flash"]
    assert got["|>"] == ["keyword.operator.pipe.flash"]
    assert got["linear"] == ["entity.name.function.call.flash"]
    assert got["false"] == ["constant.language.flash"]
    assert got['# tied "x"'] == ["comment.line.number-sign.flash"]
    line = "model GPT2(d = 7.5e-1, n = 1_000) { input x: int64[B, T]"
    got = {line[s:e]: scopes for s, e, scopes in tokenize(line)}
    assert got["model GPT2"] == ["keyword.control.flash", "entity.name.type.flash"]
    assert got["7.5e-1"] == got["1_000"] == ["constant.numeric.flash"]
    assert got["int64"] == ["storage.type.dtype.flash"]


def test_every_keyword_of_the_language_is_highlighted():
    lark = (ROOT / "flashc" / "syntax" / "flash.lark").read_text()
    words = set(re.findall(r'"([a-z_]+)"', lark))
    for word in words:
        scopes = [sc for _, _, sc in tokenize(f"{word} x")][0]
        assert scopes[0].startswith("keyword."), word


def test_the_extension_is_wired_to_the_grammar_and_the_server():
    package = json.loads((EXTENSION / "package.json").read_text())
    (language,) = package["contributes"]["languages"]
    (grammar,) = package["contributes"]["grammars"]
    assert language["extensions"] == [".flash"] and grammar["language"] == language["id"] == "flash"
    assert (EXTENSION / grammar["path"]).is_file() and grammar["scopeName"] == GRAMMAR["scopeName"]
    assert (EXTENSION / language["configuration"]).is_file()
    json.loads((EXTENSION / language["configuration"]).read_text())
    script = (EXTENSION / package["main"]).read_text()
    assert 'args: ["lsp"]' in script and "vscode-languageclient/node" in script
    assert "vscode-languageclient" in package["dependencies"]
