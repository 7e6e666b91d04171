"""SVG text of a laid-out scene, written directly (no drawing library).

Every box is a ``<g class="node ...">`` holding its ``<rect>`` and ``<text>`` lines,
with ``data-line`` (its source line) and, for a collapsed block, ``data-frame``:
the HTML view and the tests read the picture through these attributes.
"""

from __future__ import annotations

from html import escape

from flashc.render.layout import CHAR, FONT, LINE, PAD_Y, Drawing, Rect

STYLE = """
.node rect { stroke: #4a5568; stroke-width: 1.2; rx: 6; }
.kind-input rect { fill: #e6f4ea; stroke: #2f855a; }
.kind-output rect { fill: #e8f0fe; stroke: #2b6cb0; }
.kind-op rect { fill: #ffffff; }
.kind-group rect { fill: #fff8e1; stroke: #b7791f; stroke-width: 2; }
.kind-fold rect { fill: #f7fafc; stroke: #a0aec0; stroke-dasharray: 5 3; }
.node text { font-family: monospace; font-size: 12px; fill: #2d3748; }
.node text.title { font-weight: bold; fill: #1a202c; }
.cluster rect { fill: #fbfbfd; stroke: #b7791f; stroke-width: 1; stroke-dasharray: 3 2; rx: 10; }
.cluster text { font-family: monospace; font-size: 11px; fill: #975a16; paint-order: stroke; stroke: #fbfbfd;
                stroke-width: 4px; stroke-linejoin: round; }
.edge { fill: none; stroke: #718096; stroke-width: 1.3; }
.edge.residual { stroke: #dd6b20; stroke-width: 1.6; stroke-dasharray: 6 3; }
.edge.tied { stroke: #805ad5; stroke-width: 1.6; stroke-dasharray: 2 3; }
.legend text { font-family: monospace; font-size: 11px; fill: #4a5568; }
"""


def _path(points: list[tuple[float, float]], kind: str) -> str:
    if kind == "tied":
        return "M " + " L ".join(f"{x:.1f} {y:.1f}" for x, y in points)
    d = f"M {points[0][0]:.1f} {points[0][1]:.1f}"
    for (ax, ay), (bx, by) in zip(points, points[1:]):
        dy = (by - ay) / 2
        d += f" C {ax:.1f} {ay + dy:.1f} {bx:.1f} {by - dy:.1f} {bx:.1f} {by:.1f}"
    return d


def _text_lines(rect: Rect, title: str, lines: list[str]) -> str:
    out = []
    y = rect.y + PAD_Y + LINE - 4
    for k, text in enumerate([title, *lines]):
        cls = ' class="title"' if k == 0 else ""
        x = rect.x + (rect.w - len(text) * CHAR) / 2
        out.append(f'<text{cls} x="{x:.1f}" y="{y:.1f}">{escape(text)}</text>')
        y += LINE
    return "".join(out)


def to_svg(drawing: Drawing, title: str = "") -> str:
    """The whole picture as one standalone SVG document."""
    scene = drawing.scene
    legend_h = 2 * LINE + 8
    width, height = max(drawing.width, 430), drawing.height + legend_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-size="{FONT}">',
        f"<title>{escape(title)}</title>" if title else "",
        f"<style>{STYLE}</style>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#718096"/></marker></defs>',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    for cluster in sorted(scene.clusters, key=lambda c: c.depth):
        rect = drawing.clusters.get(cluster.frame)
        if rect is None:
            continue
        parts.append(
            f'<g class="cluster" data-frame="{cluster.frame}" data-line="{cluster.line}">'
            f'<rect x="{rect.x:.1f}" y="{rect.y:.1f}" width="{rect.w:.1f}" height="{rect.h:.1f}"/></g>'
        )
    for edge, route in zip(scene.edges, drawing.routes):
        label = f"<title>{escape(edge.label)}</title>" if edge.label else ""
        parts.append(
            f'<path class="edge {edge.kind}" data-source="{escape(edge.source)}" data-target="{escape(edge.target)}" '
            f'd="{_path(route, edge.kind)}" marker-end="url(#arrow)">{label}</path>'
        )
    for cluster in scene.clusters:  # titles over the edges that pass them
        rect = drawing.clusters.get(cluster.frame)
        if rect is not None:
            parts.append(f'<g class="cluster title" data-frame="{cluster.frame}" data-line="{cluster.line}">'
                         f'<text x="{rect.x + 8:.1f}" y="{rect.y + 14:.1f}">{escape(cluster.title)}</text></g>')
    for box in scene.boxes:
        rect = drawing.boxes[box.id]
        frame = f' data-frame="{box.frame}"' if box.frame is not None else ""
        tip = box.detail + (f" (line {box.line})" if box.line else "")
        parts.append(
            f'<g class="node kind-{box.kind}" id="{escape(box.id)}" data-line="{box.line}"{frame}>'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{rect.x:.1f}" y="{rect.y:.1f}" width="{rect.w:.1f}" height="{rect.h:.1f}"/>'
            f"{_text_lines(rect, box.title, box.lines)}</g>"
        )
    parts.append(_legend(drawing.height, width))
    parts.append("</svg>")
    return "\n".join(p for p in parts if p)


def _legend(top: float, width: float) -> str:
    y = top + LINE
    items = [("edge", "data"), ("edge residual", "residual"), ("edge tied", "tied weight")]
    out = ['<g class="legend">']
    x = 24.0
    for cls, text in items:
        out.append(f'<path class="{cls}" d="M {x:.0f} {y - 4:.0f} L {x + 30:.0f} {y - 4:.0f}"/>')
        out.append(f'<text x="{x + 36:.0f}" y="{y:.0f}">{escape(text)}</text>')
        x += 46 + len(text) * CHAR
    out.append("</g>")
    return "".join(out)
