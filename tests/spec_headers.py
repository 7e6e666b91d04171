"""Reading a spec's header comment: every spec states its parameter count there."""

import re
from pathlib import Path


def header_comment(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def header_count(path: Path) -> int:
    """The last comma-grouped number of the header comment: the stated parameter count."""
    numbers = re.findall(r"\d{1,3}(?:,\d{3})+", header_comment(path))
    assert numbers, f"{path.name}: the header comment states no parameter count"
    return int(numbers[-1].replace(",", ""))
