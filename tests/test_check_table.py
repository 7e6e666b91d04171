"""The `flashc check` table: repeats folded, block subtotals, the Keras-style split, the source column."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flashc
from flashc.cli import main
from flashc.ir.tree import tree

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DECODER = 7_087_872  # one GPT-2 small decoder block


def table_rows(text: str) -> list[list[str]]:
    """The table part of a check report, each row split on runs of two or more spaces."""
    rows = []
    for line in text.splitlines()[2:]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.fixture(scope="module")
def gpt2():
    return flashc.load(SPECS / "gpt2.flash", depth=3)


def test_a_repeat_is_folded_after_its_first_block(gpt2):
    text = gpt2.table()
    rows = {r[0]: r for r in table_rows(text)}
    assert rows["blocks"][1:4] == ["repeat(3, Decoder)", "float32[B, T, 768]", f"{3 * DECODER:,}"]
    assert rows["blocks.0"][1:4] == ["Decoder", "float32[B, T, 768]", f"{DECODER:,}"]
    assert rows["blocks.0.attention"][3] == "2,362,368"
    assert rows["blocks.1 .. blocks.2"][1:4] == ["2 more Decoder", "(--expand shows them)", f"{2 * DECODER:,}"]
    assert "blocks.2.attention" not in text
    assert "total parameters: 60,648,960" in text


def test_expand_lists_every_block(gpt2):
    text = gpt2.table(expand=True)
    names = [r[0] for r in table_rows(text)]
    assert {"blocks.0", "blocks.1", "blocks.2", "blocks.2.attention", "blocks.2.linear_1"} <= set(names)
    assert not any(n.startswith("blocks.1 ..") for n in names)
    assert "total parameters: 60,648,960" in text


def test_the_table_rows_add_up_to_the_total():
    """Model-level rows and block headers (not their contents) sum to the parameter count."""
    spec = flashc.load(SPECS / "translation.flash")
    text = spec.table(expand=True)
    top = [r for r in text.splitlines()[2:] if r.strip() and not r.startswith(" ")]
    top = top[: next(i for i, r in enumerate(top) if r.startswith("model "))]
    assert sum(int(r.split()[-2].replace(",", "")) for r in top) == spec.parameter_count


def test_block_subtotals_are_the_weights_under_their_path():
    spec = flashc.load(SPECS / "resnet18.flash")
    rows = {r[0]: r for r in table_rows(spec.table())}
    for path in ("layer1", "layer2.0", "layer4.1"):
        want = sum(w.spec.size for p, w in spec.graph.weights.items() if p.startswith(path + ".") and not w.spec.buffer)
        assert rows[path][3] == f"{want:,}", path
    assert rows["layer2.0"][1] == "BasicBlock"
    assert rows["layer2"][1] == "sequential(2)"


def test_json_has_the_totals():
    data = flashc.load(SPECS / "resnet18.flash").to_json()
    assert data["totals"]["trainable"] == {"count": 11_689_512, "bytes": 4 * 11_689_512}
    assert data["totals"]["buffers"]["count"] == 9_620


def test_trainable_non_trainable_and_buffer_totals():
    text = flashc.load(SPECS / "resnet18.flash").table()
    assert "total parameters: 11,689,512" in text
    lines = {ln.split(":")[0].strip(): ln for ln in text.splitlines() if ln.startswith("  ")}
    assert "11,689,512" in lines["trainable"] and "(44.59 MB)" in lines["trainable"]
    assert lines["non-trainable"].split()[1] == "0"
    assert lines["buffers"].split()[1] == "9,620"  # 20 batchnorms: mean, var (2 * 4,800) + 20 step counters


def test_the_source_column_is_the_line_the_layer_is_applied_on(gpt2):
    rows = {r[0]: r for r in table_rows(gpt2.table())}
    spec = SPECS / "gpt2.flash"
    assert rows["wte"][-1] == str(line_of(spec, "h = (wte(tokens)"))
    assert rows["blocks.0.attention"][-1] == str(line_of(spec, "|> attention(heads, causal)"))
    assert rows["blocks"][-1] == str(line_of(spec, "h = h |> blocks"))


def test_json_rows_carry_line_and_block():
    data = flashc.load(SPECS / "gpt2.flash", depth=2).to_json()
    by_layer = {r["layer"]: r for r in data["layers"]}
    assert by_layer["blocks.1.attention"]["block"] == "blocks.1"
    assert by_layer["wte"]["block"] == ""
    assert by_layer["blocks.1.attention"]["line"] == line_of(SPECS / "gpt2.flash", "|> attention(heads, causal)")
    json.dumps(data, default=str)


def test_the_tree_nests_every_node_once():
    graph = flashc.load(SPECS / "translation.flash").graph
    root = tree(graph)
    assert list(root.nodes()) == list(graph.nodes)
    encoder = next(g for g in root.groups if g.frame.path == "encoder")
    assert encoder.frame.kind == "repeat" and encoder.frame.count == 3
    assert [g.frame.path for g in encoder.groups] == ["encoder.0", "encoder.1", "encoder.2"]
    feed = encoder.groups[0].groups[0]
    assert (feed.frame.name, feed.frame.path) == ("FeedForward", "encoder.0.feed_forward")


def test_a_shared_repeat_folds_too():
    src = ("model M(n = 4) {\n  input x: float32[B, 8]\n  block Step(x) {\n    return x |> linear(8) |> tanh\n  }\n"
           "  output y = x |> repeat(n, Step, shared)\n}\n")
    rows = table_rows(flashc.loads(src).table())
    assert rows[0][1:4] == ["repeat(4, Step)", "float32[B, 8]", "72"]  # one set of weights
    assert rows[-1][1:4] == ["3 more Step (shared)", "(--expand shows them)", "0"]


def test_check_expand_flag(capsys):
    assert main(["check", str(SPECS / "gpt2.flash"), "--set", "depth=2", "--expand"]) == 0
    assert "blocks.1.attention" in capsys.readouterr().out


def test_a_closed_pipe_is_a_quiet_exit():
    cmd = f"{sys.executable} -m flashc.cli check {SPECS / 'gpt2.flash'} | head -1"
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.split() == ["layer", "op", "output", "params", "source"]
    assert r.stderr == ""
    assert r.returncode in (0, 141)
