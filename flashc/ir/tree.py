"""The graph as a tree of block applications: what the check table folds and the picture draws as boxes.

Every node carries the stack of frames (block, repeat, sequential applications) it
was built in. A frame is pushed and popped around its body, so the nodes of one
application are contiguous in execution order and the tree is rebuilt in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from flashc.ir.graph import Frame, Graph, Node


@dataclass
class Group:
    """One application (``frame``) and what was built inside it, in order; the root has no frame."""

    frame: Frame | None
    children: list[Group | Node] = field(default_factory=list)

    def nodes(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Group):
                yield from child.nodes()
            else:
                yield child

    def last(self) -> Node | None:
        """The node that computes this group's result (the last one built in it)."""
        for node in reversed(list(self.nodes())):
            return node
        return None

    @property
    def groups(self) -> list[Group]:
        return [c for c in self.children if isinstance(c, Group)]


def tree(graph: Graph) -> Group:
    """Nest the graph's nodes under the block applications they were built in."""
    root = Group(None)
    open_: list[Group] = [root]
    for node in graph.nodes:
        frames = node.frames
        shared = 0
        while shared < len(frames) and shared + 1 < len(open_) and open_[shared + 1].frame == frames[shared]:
            shared += 1
        del open_[shared + 1:]
        for frame in frames[shared:]:
            group = Group(frame)
            open_[-1].children.append(group)
            open_.append(group)
        open_[-1].children.append(node)
    return root
