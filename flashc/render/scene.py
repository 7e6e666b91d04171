"""What a picture of a model shows: boxes and edges, with some blocks open and the rest collapsed.

A *view* is decided by the set of open frames (block, repeat and sequential
applications, see :mod:`flashc.ir.tree`). Every IR node is drawn by the outermost
closed frame around it (one box for the whole block), or by itself when all its
frames are open. An open repeat shows its first block and folds the others into
one box, as `flashc check` does. Edges are data flow between boxes; an edge into
an `add` that skips layers is a residual; a tied weight is an edge of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flashc.check import fresh_params
from flashc.ir.graph import Frame, Graph, Node
from flashc.ir.tree import Group, tree


@dataclass
class Box:
    """One box of the picture."""

    id: str
    kind: str  # "input" | "output" | "op" | "group" | "fold"
    title: str
    lines: list[str]  # the text under the title
    line: int = 0  # the source line (0: none)
    file: str = ""
    frame: int | None = None  # a group box: the frame it stands for (click to open)
    detail: str = ""  # longer text for a tooltip: the full layer path, the op
    is_float: bool = True  # its result is a float tensor (a residual carries features, never token ids)


@dataclass
class Edge:
    source: str
    target: str
    kind: str = "data"  # "data" | "residual" | "tied"
    label: str = ""


@dataclass
class Cluster:
    """An open frame drawn as a frame around its boxes."""

    frame: int
    title: str
    members: list[str]
    depth: int
    parent: int | None
    line: int = 0


@dataclass
class Scene:
    boxes: list[Box] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)


def frames_to_depth(graph: Graph, depth: int) -> set[int]:
    """The frames open when every block down to ``depth`` levels of nesting is open."""
    out: set[int] = set()
    for node in graph.nodes:
        out.update(f.id for f in node.frames[:depth])
    return out


def all_frames(graph: Graph) -> dict[int, Frame]:
    return {f.id: f for node in graph.nodes for f in node.frames}


def _fmt(n: int) -> str:
    return f"{n:,} params" if n else ""


def _local(path: str, prefix: str) -> str:
    return path[len(prefix) + 1:] if prefix and path.startswith(prefix + ".") else path


def build_scene(graph: Graph, open_frames: Iterable[int] = ()) -> Scene:
    """Boxes, edges and clusters of ``graph`` with the frames in ``open_frames`` open."""
    opened = set(open_frames)
    scene = Scene()
    params = {id(n): p for n, p in zip(graph.nodes, fresh_params(graph).values())}
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    rep: dict[int, str] = {}  # id(node) -> box id
    producer: dict[str, str] = {}  # value name -> box id

    for value in graph.inputs:
        box = Box(f"in:{value.name}", "input", value.name, [str(value.type)], detail=f"input {value.name}: {value.type}",
                  is_float=value.type.is_float)
        scene.boxes.append(box)
        producer[value.name] = box.id

    def place(group: Group, prefix: str, depth: int, parent: int | None) -> None:
        for child in group.children:
            if isinstance(child, Node):
                box = _op_box(child, index[id(child)], params[id(child)], prefix)
                scene.boxes.append(box)
                rep[id(child)] = box.id
                continue
            frame = child.frame
            assert frame is not None
            if frame.id not in opened:
                box = _group_box(child, sum(params[id(n)] for n in child.nodes()), prefix)
                scene.boxes.append(box)
                for node in child.nodes():
                    rep[id(node)] = box.id
                continue
            start = len(scene.boxes)
            cluster = Cluster(frame.id, _frame_title(frame), [], depth, parent, frame.span.line)
            scene.clusters.append(cluster)
            instances = child.groups
            if frame.kind == "repeat" and len(instances) > 1:
                folded = Group(frame, [instances[0]])
                place(folded, frame.path, depth + 1, frame.id)
                rest = instances[1:]
                box = _fold_box(frame, rest, sum(params[id(n)] for g in rest for n in g.nodes()))
                scene.boxes.append(box)
                for g in rest:
                    for node in g.nodes():
                        rep[id(node)] = box.id
            else:
                place(child, frame.path, depth + 1, frame.id)
            cluster.members = [b.id for b in scene.boxes[start:]]

    place(tree(graph), "", 0, None)
    for box in scene.boxes:  # a block imported from another file: name the file, keep lines for this one
        if box.line and box.file and box.file != graph.span.file:
            box.detail += f" ({Path(box.file).name}:{box.line})"
            box.line = 0

    for node in graph.nodes:
        for value in node.outputs:
            producer[value.name] = rep[id(node)]
    seen: set[tuple[str, str]] = set()
    for node in graph.nodes:
        target = rep[id(node)]
        for value in node.inputs:
            if value is None or value.name not in producer:
                continue
            source = producer[value.name]
            if source != target and (source, target) not in seen:
                seen.add((source, target))
                scene.edges.append(Edge(source, target))
    for name, value in graph.outputs:
        box = Box(f"out:{name}", "output", name, [str(value.type)], detail=f"output {name}: {value.type}")
        scene.boxes.append(box)
        if value.name in producer:
            scene.edges.append(Edge(producer[value.name], box.id))
    _mark_residuals(scene, graph, rep)
    _tied_edges(scene, graph, rep)
    return scene


def _op_box(node: Node, index: int, params: int, prefix: str) -> Box:
    name = node.layer or node.outputs[0].name
    shape = ", ".join(str(o.type) for o in node.outputs)
    title = _local(name, prefix)
    lines = [node.op.name] if node.op.name != title else []
    lines += [shape, _fmt(params)]
    return Box(f"op:{index}", "op", title, [ln for ln in lines if ln], node.span.line, node.span.file,
               detail=f"{name}: {node.op.name} -> {shape}", is_float=node.outputs[0].type.is_float)


def _frame_title(frame: Frame) -> str:
    if frame.kind == "repeat":
        return f"{frame.path}: repeat({frame.count}, {frame.name})"
    if frame.kind == "sequential":
        return f"{frame.path}: sequential({frame.count})"
    return f"{frame.path}: {frame.name}"


def _group_box(group: Group, params: int, prefix: str) -> Box:
    frame = group.frame
    assert frame is not None
    last = group.last()
    shape = ", ".join(str(o.type) for o in last.outputs) if last is not None else ""
    kind = {"repeat": f"{frame.count} x {frame.name}", "sequential": f"sequential({frame.count})"}.get(frame.kind, frame.name)
    title = _local(frame.path, prefix) or frame.name
    lines = [kind, shape, _fmt(params)]
    return Box(f"group:{frame.id}", "group", title, [ln for ln in lines if ln], frame.span.line, frame.span.file,
               frame=frame.id, detail=f"{frame.path}: {kind} (click to open)",
               is_float=last is None or last.outputs[0].type.is_float)


def _fold_box(frame: Frame, rest: list[Group], params: int) -> Box:
    first, final = rest[0].frame, rest[-1].frame
    assert first is not None and final is not None
    last = rest[-1].last()
    shape = ", ".join(str(o.type) for o in last.outputs) if last is not None else ""
    span = first.path if len(rest) == 1 or first.path == final.path else f"{first.path} .. {final.path}"
    lines = [f"{len(rest)} more {frame.name}", shape, _fmt(params)]
    return Box(f"fold:{frame.id}", "fold", span, [ln for ln in lines if ln], frame.span.line, frame.span.file,
               detail=f"{span}: the same block {len(rest)} more times")


def _mark_residuals(scene: Scene, graph: Graph, rep: dict[int, str]) -> None:
    """An input of an `add` is a residual when it is the short branch of a fork that joins there.

    The branch is the edge itself (`x + f(x)`) or up to two single-input boxes before it
    (`identity`, or ResNet's 1x1 `downsample`); where it starts, a float tensor must also
    reach the add the long way. Two embeddings of the same token ids are not a residual.
    """
    adds = {rep[id(n)] for n in graph.nodes if n.op.name == "add" and rep[id(n)].startswith("op:")}
    boxes = {b.id: b for b in scene.boxes}
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for edge in scene.edges:
        succ.setdefault(edge.source, []).append(edge.target)
        pred.setdefault(edge.target, []).append(edge.source)

    def reaches(start: str, goal: str, skip: str) -> bool:
        """Whether ``start`` reaches ``goal`` other than through its successor ``skip``."""
        stack = [t for t in succ.get(start, []) if t != skip]
        seen = set(stack)
        while stack:
            here = stack.pop()
            if here == goal:
                return True
            for t in succ.get(here, []):
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return False

    for edge in scene.edges:
        if edge.target not in adds:
            continue
        branch = [edge.target, edge.source]
        while len(branch) < 4 and len(pred.get(branch[-1], [])) == 1:
            branch.append(pred[branch[-1]][0])
        for k in range(1, len(branch)):
            origin = branch[k]
            if boxes[origin].is_float and reaches(origin, edge.target, branch[k - 1]):
                edge.kind, edge.label = "residual", "residual"
                break


def _tied_edges(scene: Scene, graph: Graph, rep: dict[int, str]) -> None:
    """`weight = wte.weight`: an edge from the layer that owns the weight to the one that reuses it."""
    owner: dict[str, str] = {}
    for node in graph.nodes:
        for local, path in node.weights:
            if node.layer and path == f"{node.layer}.{local}":
                owner.setdefault(path, rep[id(node)])
    seen: set[tuple[str, str]] = set()
    for node in graph.nodes:
        for local, path in node.weights:
            if node.layer and path != f"{node.layer}.{local}" and path in owner:
                source, target = owner[path], rep[id(node)]
                if source != target and (source, target) not in seen:
                    seen.add((source, target))
                    scene.edges.append(Edge(source, target, "tied", f"tied {path}"))
