"""A layered drawing of a scene (Sugiyama's method, kept small): no graphviz needed.

1. layers: longest path from the inputs, data edges only (tied edges do not order);
2. an edge across several layers gets a dummy point per layer, so it bends around boxes;
3. order inside a layer: a few sweeps of the barycenter rule (the mean position of
   the neighbours in the layer above, then below);
4. x: each box wants to sit over the mean of its neighbours; the nearest positions
   that keep the order and the spacing are the mean of a left-packed and a
   right-packed placement (both feasible, so their mean is too);
5. y: one row per layer, as tall as its tallest box; rows are spaced so that the
   frames drawn around open blocks fit between them.

Text is monospace, so a box's size follows from its characters alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flashc.render.scene import Box, Cluster, Scene

FONT = 12  # px, monospace
CHAR = FONT * 0.6  # the advance of one monospace character
LINE = 16  # px per text line
PAD_X, PAD_Y = 10, 7
GAP_X = 28
GAP_Y = 26
DUMMY_W = 8
CLUSTER_PAD, CLUSTER_TITLE = 10, 20
MARGIN = 24


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def right(self) -> float:
        return self.x + self.w

    def overlaps(self, other: Rect) -> bool:
        return self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom


@dataclass
class Drawing:
    scene: Scene
    boxes: dict[str, Rect] = field(default_factory=dict)
    routes: list[list[tuple[float, float]]] = field(default_factory=list)  # one per scene edge
    clusters: dict[int, Rect] = field(default_factory=dict)
    width: float = 0
    height: float = 0


def box_size(box: Box) -> tuple[float, float]:
    chars = max([len(box.title), *(len(t) for t in box.lines)])
    return chars * CHAR + 2 * PAD_X, (1 + len(box.lines)) * LINE + 2 * PAD_Y


def _layers(ids: list[str], preds: dict[str, list[str]]) -> dict[str, int]:
    layer: dict[str, int] = {}
    for i in ids:  # the boxes come in execution order: every predecessor is placed first
        layer[i] = max((layer[p] + 1 for p in preds[i] if p in layer), default=0)
    return layer


def layout(scene: Scene) -> Drawing:
    ids = [b.id for b in scene.boxes]
    size = {b.id: box_size(b) for b in scene.boxes}
    flow = [e for e in scene.edges if e.kind != "tied"]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for e in flow:
        preds[e.target].append(e.source)
    layer = _layers(ids, preds)

    # dummy points for long edges
    chains: list[list[str]] = []
    width = dict((i, size[i][0]) for i in ids)
    up: dict[str, list[str]] = {i: [] for i in ids}
    down: dict[str, list[str]] = {i: [] for i in ids}
    for n, e in enumerate(flow):
        chain = [e.source]
        for k in range(layer[e.source] + 1, layer[e.target]):
            d = f"~{n}.{k}"
            layer[d], width[d] = k, DUMMY_W
            up[d], down[d] = [], []
            chain.append(d)
        chain.append(e.target)
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)
        chains.append(chain)

    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for i in ids:
        rows[layer[i]].append(i)
    for chain in chains:
        rows_of = chain[1:-1]
        for d in rows_of:
            rows[layer[d]].append(d)
    _order(rows, up, down)
    depth = max((c.depth + 1 for c in scene.clusters), default=0)
    x = _place_x(rows, width, up, down, GAP_X + 2 * CLUSTER_PAD * depth)

    drawing = Drawing(scene)
    opens, closes = _cluster_rows(scene.clusters, layer)
    y = MARGIN
    point: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        y += opens.get(r, 0) * (CLUSTER_PAD + CLUSTER_TITLE) + (closes.get(r - 1, 0) * CLUSTER_PAD if r else 0)
        height = max((size[i][1] for i in row if i in size), default=LINE)
        for i in row:
            if i in size:
                w, h = size[i]
                drawing.boxes[i] = Rect(x[i] - w / 2, y, w, h)
            else:
                point[i] = (x[i], y + height / 2)
        y += height + GAP_Y
    _shift(drawing, point, MARGIN + 16 + CLUSTER_PAD * depth - min(r.x for r in drawing.boxes.values()))
    edge_chain = iter(chains)
    for e in scene.edges:
        if e.kind == "tied":
            drawing.routes.append(_tied_route(drawing.boxes[e.source], drawing.boxes[e.target],
                                              list(drawing.boxes.values())))
            continue
        chain = next(edge_chain)
        src, dst = drawing.boxes[chain[0]], drawing.boxes[chain[-1]]
        drawing.routes.append([(src.cx, src.bottom), *(point[d] for d in chain[1:-1]), (dst.cx, dst.y)])
    _frame_clusters(drawing, scene.clusters)
    extent = list(drawing.boxes.values()) + list(drawing.clusters.values())
    drawing.width = max(r.right for r in extent) + MARGIN
    drawing.height = max(r.bottom for r in extent) + MARGIN
    for route in drawing.routes:
        drawing.width = max(drawing.width, max(px for px, _ in route) + MARGIN)
    return drawing


def _order(rows: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]]) -> None:
    """Barycenter sweeps: each row sorted by the mean position of its neighbours in the row before."""
    for sweep in range(8):
        forward = sweep % 2 == 0
        sequence = range(1, len(rows)) if forward else range(len(rows) - 2, -1, -1)
        for r in sequence:
            ref = rows[r - 1] if forward else rows[r + 1]
            pos = {n: k for k, n in enumerate(ref)}
            current = {n: k for k, n in enumerate(rows[r])}

            links = up if forward else down

            def key(n: str, pos: dict[str, int] = pos, current: dict[str, int] = current,
                    links: dict[str, list[str]] = links) -> float:
                near = [pos[m] for m in links[n] if m in pos]
                return sum(near) / len(near) if near else current[n]

            rows[r].sort(key=key)


def _place_x(rows: list[list[str]], width: dict[str, float], up: dict[str, list[str]], down: dict[str, list[str]],
             gap: float) -> dict[str, float]:
    x: dict[str, float] = {}
    for row in rows:
        left = 0.0
        for n in row:
            x[n] = left + width[n] / 2
            left += width[n] + gap
    for sweep in range(8):
        forward = sweep % 2 == 0
        order = rows if forward else rows[::-1]
        for row in order:
            want = []
            for n in row:
                near = [x[m] for m in (up[n] if forward else down[n])]
                want.append(sum(near) / len(near) if near else x[n])
            x.update(zip(row, _fit(row, want, width, gap)))
    return x


def _fit(row: list[str], want: list[float], width: dict[str, float], gap: float) -> list[float]:
    """Positions nearest to ``want`` that keep the row's order and spacing."""
    need = [(width[a] + width[b]) / 2 + gap for a, b in zip(row, row[1:])]
    left = list(want)
    for i in range(1, len(row)):
        left[i] = max(left[i], left[i - 1] + need[i - 1])
    right = list(want)
    for i in range(len(row) - 2, -1, -1):
        right[i] = min(right[i], right[i + 1] - need[i])
    return [(a + b) / 2 for a, b in zip(left, right)]


def _shift(drawing: Drawing, point: dict[str, tuple[float, float]], dx: float) -> None:
    for r in drawing.boxes.values():
        r.x += dx
    for k, (px, py) in point.items():
        point[k] = (px + dx, py)


def _cluster_rows(clusters: list[Cluster], layer: dict[str, int]) -> tuple[dict[int, int], dict[int, int]]:
    """How many frames open at each row (their titles need room above it) and close after it."""
    opens: dict[int, int] = {}
    closes: dict[int, int] = {}
    for cluster in clusters:
        rows = [layer[m] for m in cluster.members if m in layer]
        if rows:
            opens[min(rows)] = opens.get(min(rows), 0) + 1
            closes[max(rows)] = closes.get(max(rows), 0) + 1
    return opens, closes


def _tied_route(src: Rect, dst: Rect, boxes: list[Rect]) -> list[tuple[float, float]]:
    """A tied weight: out of the owner's side, down the margin, into the user's side (the freer side)."""
    def in_the_way(side: str) -> int:
        return sum(1 for r in boxes for end in (src, dst) if r is not end and r.y < end.bottom and end.y < r.bottom
                   and (r.right <= end.x if side == "left" else r.x >= end.right))

    if in_the_way("left") < in_the_way("right"):
        lane = min(r.x for r in boxes) - 16
        return [(src.x, src.y + src.h / 2), (lane, src.y + src.h / 2), (lane, dst.y + dst.h / 2),
                (dst.x, dst.y + dst.h / 2)]
    lane = max(r.right for r in boxes) + 16
    return [(src.right, src.y + src.h / 2), (lane, src.y + src.h / 2), (lane, dst.y + dst.h / 2),
            (dst.right, dst.y + dst.h / 2)]


def _frame_clusters(drawing: Drawing, clusters: list[Cluster]) -> None:
    """A frame around each open block, inner frames first so outer ones enclose them."""
    for cluster in sorted(clusters, key=lambda c: -c.depth):
        rects = [drawing.boxes[m] for m in cluster.members if m in drawing.boxes]
        rects += [drawing.clusters[c.frame] for c in clusters if c.parent == cluster.frame and c.frame in drawing.clusters]
        if not rects:
            continue
        x0, y0 = min(r.x for r in rects), min(r.y for r in rects)
        x1, y1 = max(r.right for r in rects), max(r.bottom for r in rects)
        title_w = len(cluster.title) * CHAR * 11 / FONT + 2 * CLUSTER_PAD
        w = max(x1 - x0 + 2 * CLUSTER_PAD, title_w)
        drawing.clusters[cluster.frame] = Rect(x0 - CLUSTER_PAD, y0 - CLUSTER_PAD - CLUSTER_TITLE, w,
                                               y1 - y0 + 2 * CLUSTER_PAD + CLUSTER_TITLE)
