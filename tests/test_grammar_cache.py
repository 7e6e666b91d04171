"""The LALR tables are cached on disk; a cache that cannot be written is silently skipped."""

from __future__ import annotations

import os
import stat

import pytest

from flashc.syntax import grammar

SPEC = "model M() {\n  input x: float32[B, 4]\n  output y = x |> linear(3)\n}\n"


def test_tables_are_written_once_and_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHC_CACHE_DIR", str(tmp_path / "cache"))
    text = grammar.grammar_text()
    first = grammar.load(text)
    target = grammar.cache_file(text, **grammar.OPTIONS)
    assert target.is_file() and target.parent == tmp_path / "cache"
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left
    written = target.stat().st_mtime_ns
    second = grammar.load(text)
    assert target.stat().st_mtime_ns == written
    assert first.parse(SPEC) == second.parse(SPEC)


def test_a_changed_grammar_gets_its_own_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHC_CACHE_DIR", str(tmp_path))
    text = grammar.grammar_text()
    assert grammar.cache_file(text, **grammar.OPTIONS) != grammar.cache_file(text + "\n// edited\n", **grammar.OPTIONS)


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHC_CACHE_DIR", str(tmp_path))
    text = grammar.grammar_text()
    target = grammar.cache_file(text, **grammar.OPTIONS)
    target.write_bytes(b"not a cache")
    assert grammar.load(text).parse(SPEC).data == "start"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_cache_directory_falls_back_silently(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv("FLASHC_CACHE_DIR", str(locked / "flashc"))
    assert grammar.load(grammar.grammar_text()).parse(SPEC).data == "start"
    assert capsys.readouterr() == ("", "")


def test_an_unusable_cache_path_falls_back_silently(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    monkeypatch.setenv("FLASHC_CACHE_DIR", str(blocker / "flashc"))
    assert grammar.load(grammar.grammar_text()).parse(SPEC).data == "start"
    assert list(tmp_path.iterdir()) == [blocker]
    assert capsys.readouterr() == ("", "")
