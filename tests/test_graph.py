"""`flashc graph`: the picture's content (boxes, labels, edges), its geometry, the HTML view,
and, where Chromium is installed, what a browser actually draws."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import flashc
from flashc.cli import main
from flashc.render.entry import render
from flashc.render.layout import CHAR

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
NS = {"s": "http://www.w3.org/2000/svg"}
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

CASES = {  # name: (spec, depth)
    "gpt2": ("gpt2.flash", 2),
    "resnet18": ("resnet18.flash", 2),
    "translation": ("translation.flash", 1),
}


def boxes(svg: str) -> dict[str, dict]:
    """Each node box: its rect, its text lines and their anchors, its attributes."""
    root = ET.fromstring(svg)
    out = {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        if "node" not in g.get("class", "").split():
            continue
        rect = g.find("s:rect", NS)
        texts = g.findall("s:text", NS)
        out[g.get("id")] = {
            "kind": g.get("class").split()[1],
            "x": float(rect.get("x")), "y": float(rect.get("y")),
            "w": float(rect.get("width")), "h": float(rect.get("height")),
            "texts": [(t.text, float(t.get("x")), float(t.get("y"))) for t in texts],
            "line": int(g.get("data-line")), "frame": g.get("data-frame"),
        }
    return out


def edges(svg: str) -> list[tuple[str, str, str]]:
    root = ET.fromstring(svg)
    return [(p.get("class").split()[-1], p.get("data-source"), p.get("data-target"))
            for p in root.iter("{http://www.w3.org/2000/svg}path") if "edge" in p.get("class", "").split()
            and p.get("data-source")]


@pytest.fixture(scope="module")
def pictures() -> dict[str, str]:
    return {name: render(flashc.load(SPECS / spec).graph, depth) for name, (spec, depth) in CASES.items()}


def titles(svg: str) -> set[str]:
    return {b["texts"][0][0] for b in boxes(svg).values()}


def test_gpt2_shows_its_layers_the_folded_blocks_and_both_edge_kinds(pictures):
    svg = pictures["gpt2"]
    assert {"tokens", "wte", "wpe", "attention", "layernorm_1", "blocks.1 .. blocks.11", "logits"} <= titles(svg)
    by_title = {b["texts"][0][0]: b for b in boxes(svg).values()}
    assert [t for t, _, _ in by_title["attention"]["texts"]] == ["attention", "float32[B, T, 768]", "2,362,368 params"]
    assert "11 more Decoder" in [t for t, _, _ in by_title["blocks.1 .. blocks.11"]["texts"]]
    kinds = [k for k, _, _ in edges(svg)]
    assert kinds.count("residual") == 2 and kinds.count("tied") == 1
    attention_line = next(i for i, ln in enumerate((SPECS / "gpt2.flash").read_text().splitlines(), 1) if "attention(" in ln)
    assert by_title["attention"]["line"] == attention_line


def test_collapsed_blocks_are_one_box_each():
    graph = flashc.load(SPECS / "resnet18.flash").graph
    svg = render(graph, 0)
    groups = [b for b in boxes(svg).values() if b["kind"] == "kind-group"]
    assert sorted(b["texts"][0][0] for b in groups) == ["layer1", "layer2", "layer3", "layer4"]
    assert all(b["frame"] for b in groups)
    assert "conv2d" not in {t for b in groups for t, _, _ in b["texts"]}


def test_resnet_shortcuts_are_residual_edges(pictures):
    svg = pictures["resnet18"]
    named = {k: b["texts"][0][0] for k, b in boxes(svg).items()}
    residual = [(named[s], named[t]) for kind, s, t in edges(svg) if kind == "residual"]
    assert residual.count(("identity", "add")) == 5 and residual.count(("downsample", "add")) == 3


@pytest.mark.parametrize("name", CASES)
def test_no_two_boxes_overlap_and_text_fits(pictures, name):
    found = list(boxes(pictures[name]).values())
    assert len(found) > 10
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
            assert apart, (a["texts"][0], b["texts"][0])
        for text, x, y in a["texts"]:
            assert a["x"] <= x and x + len(text) * CHAR <= a["x"] + a["w"] + 0.5, text
            assert a["y"] + 12 <= y <= a["y"] + a["h"], text


@pytest.mark.parametrize("name", CASES)
def test_every_edge_joins_two_drawn_boxes(pictures, name):
    ids = set(boxes(pictures[name]))
    for _, source, target in edges(pictures[name]):
        assert source in ids and target in ids


def test_rendering_is_deterministic():
    graph = flashc.load(SPECS / "translation.flash").graph
    assert render(graph, 2) == render(graph, 2)


def test_html_is_self_contained_and_has_a_view_per_clickable_block():
    graph = flashc.load(SPECS / "resnet18.flash").graph
    page = render(graph, 0, ".html", (SPECS / "resnet18.flash").read_text())
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")
    views = json.loads(re.search(r"const VIEWS = (.*);\n", page).group(1))
    parents = json.loads(re.search(r"const PARENT = (.*);\n", page).group(1))
    for name, svg in views.items():
        for box in boxes(svg).values():
            if box["frame"]:
                assert f"f{box['frame']}" in views, (name, box["texts"][0])
    opened = boxes(views[next(v for v in views if v != "root" and "BasicBlock" in views[v])])
    assert "conv1" in {b["texts"][0][0] for b in opened.values()}
    assert set(parents.values()) <= set(views)


def test_cli_writes_svg_and_html_and_refuses_other_suffixes(tmp_path, capsys):
    for suffix in (".svg", ".html"):
        out = tmp_path / f"m{suffix}"
        assert main(["graph", str(SPECS / "lenet5.flash"), "-o", str(out), "--depth", "1"]) == 0
        assert out.stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out
    assert main(["graph", str(SPECS / "lenet5.flash"), "-o", str(tmp_path / "m.png")]) == 2
    assert "-o must end in .svg or .html" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.html", "m.svg"]


def test_cli_graph_takes_set_overrides(tmp_path):
    out = tmp_path / "g.svg"
    assert main(["graph", str(SPECS / "gpt2.flash"), "--set", "depth=3", "-o", str(out), "--depth", "1"]) == 0
    assert "blocks.1 .. blocks.2" in titles(out.read_text())


# --- what a browser draws --------------------------------------------------------------------------

def chromium(*args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp()
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
@pytest.mark.parametrize("name", CASES)
def test_chromium_draws_every_box_with_its_text(pictures, name, tmp_path):
    from PIL import Image

    svg = pictures[name]
    size = re.search(r'width="(\d+)" height="(\d+)"', svg)
    width, height = int(size.group(1)), int(size.group(2))
    page = tmp_path / "p.html"
    page.write_text(f'<html><body style="margin:0">{svg}</body></html>')
    shot = tmp_path / "p.png"
    chromium(f"--screenshot={shot}", f"--window-size={width},{height}", page.as_uri())
    image = Image.open(shot).convert("L")
    assert image.size == (width, height)
    for box in boxes(svg).values():
        inside = image.crop((int(box["x"]) + 3, int(box["y"]) + 3, int(box["x"] + box["w"]) - 3, int(box["y"] + box["h"]) - 3))
        dark = sum(inside.histogram()[:110])
        assert dark > 20 * len(box["texts"]), (box["texts"][0], dark)  # text drawn inside every box
        top = [image.getpixel((x, round(box["y"]))) for x in range(int(box["x"] + 8), int(box["x"] + box["w"] - 8))]
        assert min(top) < 230, box["texts"][0]  # its frame is drawn where the SVG says


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
def test_chromium_runs_the_html_view(tmp_path):
    page = tmp_path / "m.html"
    assert main(["graph", str(SPECS / "resnet18.flash"), "-o", str(page)]) == 0
    dom = chromium("--dump-dom", "--virtual-time-budget=2000", page.as_uri()).stdout
    assert 'class="node kind-group"' in dom and "layer4" in dom  # the script drew the first view


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.flash")), ids=lambda p: p.stem)
def test_every_spec_draws_closed_and_fully_open_without_overlaps(path):
    graph = flashc.load(path).graph
    for depth in (0, 99):
        found = list(boxes(render(graph, depth)).values())
        shown = {t for b in found for t, _, _ in b["texts"][:1]}
        assert {v.name for v in graph.inputs} | {n for n, _ in graph.outputs} <= shown
        for i, a in enumerate(found):
            for b in found[i + 1:]:
                assert (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"]
                        or b["y"] + b["h"] <= a["y"]), (path.name, depth, a["texts"][0], b["texts"][0])


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
def test_chromium_opens_a_block_on_click_and_shows_its_source_line(tmp_path):
    spec = SPECS / "resnet18.flash"
    page = render(flashc.load(spec).graph, 0, ".html", spec.read_text())
    click = ("<script>const box = [...document.querySelectorAll('.node[data-frame]')]"
             ".find(n => n.querySelector('text').textContent === 'layer2');"
             "box.dispatchEvent(new MouseEvent('click', {bubbles: true}));</script></body>")
    path = tmp_path / "clicked.html"
    path.write_text(page.replace("</body>", click))
    dom = chromium("--dump-dom", "--virtual-time-budget=2000", path.as_uri()).stdout
    line = next(i for i, ln in enumerate(spec.read_text().splitlines(), 1) if "h = h |> layer1" in ln)
    picture = dom[dom.index('id="picture"'):dom.index('id="side"')]
    assert "layer2: sequential(2)" in picture  # layer2 is open: its frame and its two blocks
    assert picture.count("BasicBlock") >= 2
    assert f"{line} | " in dom  # the side panel quotes the source line the block is applied on


def test_a_box_from_an_imported_file_names_that_file(tmp_path):
    (tmp_path / "lib.flash").write_text("model L {\n  input x: float32[B, 4]\n  block Twice(x) {\n"
                                        "    return x |> linear(4) |> relu\n  }\n  output y = x |> Twice\n}\n")
    (tmp_path / "m.flash").write_text('from "lib.flash" import Twice\nmodel M {\n  input x: float32[B, 4]\n'
                                      "  output y = x |> Twice\n}\n")
    svg = render(flashc.load(tmp_path / "m.flash").graph, 1)
    found = {b["texts"][0][0]: b for b in boxes(svg).values()}
    assert found["linear"]["line"] == 0  # line 4 of lib.flash is not line 4 of m.flash
    assert "twice.linear: linear -&gt; float32[B, 4] (lib.flash:4)" in svg
    assert 'data-line="4"' in svg  # the block applied on line 4 of m.flash
