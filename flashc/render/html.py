"""The HTML view: one self-contained page (inline CSS and JS, no network) where blocks open on click.

Each view is a set of open blocks, laid out and drawn in Python like the SVG:
the starting view (``--depth``), and for every block box that can be clicked,
the view with that block (and the blocks around it) open. Clicking a block box
shows its view; clicking the title of an open block closes it again. Clicking
any box shows its source line beside the picture.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from flashc.ir.graph import Frame, Graph
from flashc.render.layout import layout
from flashc.render.scene import all_frames, build_scene
from flashc.render.svg import to_svg

MAX_VIEWS = 400  # a bound on the page size for very deep models: further blocks stay closed

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ margin: 0; font-family: system-ui, sans-serif; display: flex; height: 100vh; }}
#picture {{ flex: 1; overflow: auto; background: #fff; }}
#side {{ width: 340px; border-left: 1px solid #cbd5e0; padding: 12px; overflow: auto; background: #f7fafc; }}
#side h1 {{ font-size: 16px; margin: 0 0 8px; }}
#side pre {{ white-space: pre-wrap; background: #fff; border: 1px solid #e2e8f0; padding: 8px; font-size: 12px; }}
#crumbs {{ font-size: 12px; color: #4a5568; margin-bottom: 8px; }}
.node, .cluster text {{ cursor: pointer; }}
.node[data-frame] rect {{ stroke-width: 2.5; }}
.node:hover rect {{ stroke: #e53e3e; }}
</style></head>
<body>
<div id="picture"></div>
<div id="side">
<h1>{title}</h1>
<div id="crumbs">Click a block (yellow) to open it, its frame title to close it; click a box for its source line.</div>
<div id="where"></div>
<pre id="code">{summary}</pre>
</div>
<script>
const VIEWS = {views};
const PARENT = {parents};
const SOURCE = {source};
const FILE = {file};
let current = "root";
function show(id) {{
  current = id;
  document.getElementById("picture").innerHTML = VIEWS[id];
}}
function explain(el) {{
  const line = parseInt(el.getAttribute("data-line") || "0", 10);
  const tip = el.querySelector("title");
  document.getElementById("where").textContent = (tip ? tip.textContent : "") + (line ? "  [" + FILE + ":" + line + "]" : "");
  document.getElementById("code").textContent = line && SOURCE[line - 1] !== undefined ? line + " | " + SOURCE[line - 1] : "";
}}
document.getElementById("picture").addEventListener("click", (ev) => {{
  const node = ev.target.closest(".node");
  if (node) {{
    explain(node);
    const frame = node.getAttribute("data-frame");
    if (frame && VIEWS["f" + frame]) show("f" + frame);
    return;
  }}
  const cluster = ev.target.closest(".cluster");
  if (cluster) {{
    explain(cluster);
    const back = PARENT[cluster.getAttribute("data-frame")];
    if (back !== undefined) show(back);
  }}
}});
show("root");
</script>
</body></html>
"""


def _chain(frame: Frame, frames_of: dict[int, tuple[Frame, ...]]) -> set[int]:
    """The frame and every frame around it."""
    return {f.id for f in frames_of[frame.id]}


def to_html(graph: Graph, open_frames: set[int], source: str = "") -> str:
    """The page: the starting view with ``open_frames`` open, and one view per block that can be opened."""
    frames = all_frames(graph)
    frames_of: dict[int, tuple[Frame, ...]] = {}
    for node in graph.nodes:
        for k, f in enumerate(node.frames):
            frames_of.setdefault(f.id, node.frames[: k + 1])
    views: dict[str, str] = {}
    parents: dict[int, str] = {}
    pending: list[tuple[str, set[int]]] = [("root", set(open_frames))]
    while pending and len(views) < MAX_VIEWS:
        name, opened = pending.pop(0)
        scene = build_scene(graph, opened)
        views[name] = to_svg(layout(scene), graph.name)
        for box in scene.boxes:
            if box.frame is None or f"f{box.frame}" in views or any(v == f"f{box.frame}" for v, _ in pending):
                continue
            chain = _chain(frames[box.frame], frames_of)
            pending.append((f"f{box.frame}", set(open_frames) | chain))
            parents[box.frame] = name
    ins = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs)
    outs = ", ".join(f"{n}: {v.type}" for n, v in graph.outputs)
    summary = f"inputs:  {ins}\noutputs: {outs}\nparameters: {graph.parameter_count:,}"
    return PAGE.format(
        title=escape(graph.name),
        summary=escape(summary),
        views=_script_json(views),
        parents=_script_json({str(k): v for k, v in parents.items()}),
        source=_script_json(source.splitlines()),
        file=_script_json(Path(graph.span.file).name),
    )


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element (no `</script>` can end it early)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
