"""Reading spec files and resolving `import`: the only place the builder touches the file system."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flashc.build.duplicates import check_duplicates
from flashc.build.identifiers import check_declarations
from flashc.diagnostics import FlashError, Span, did_you_mean, error
from flashc.syntax import ast
from flashc.syntax.parser import parse

MAX_SPEC_BYTES = 1_000_000  # a spec is text a person writes; GPT-2's is 1.4 kB
MAX_IMPORT_DEPTH = 32
SUFFIX = ".flash"


def read_source(path: str | Path) -> str:
    """A spec's text, read at most :data:`MAX_SPEC_BYTES` (+1) bytes: `/dev/zero` ends in an error, not a hang."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise error(Span.unknown(str(path)), f"no such file: {path}") from None
    except IsADirectoryError:
        raise error(Span.unknown(str(path)), f"{path} is a directory, not a .flash file") from None
    except OSError as exc:
        raise error(Span.unknown(str(path)), f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise error(Span.nowhere(str(path)), f"{path} is larger than {MAX_SPEC_BYTES:,} bytes, the limit for a spec")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(Span(str(path), line, col, line, col + 1), "the file is not valid UTF-8 text") from None


def collect_blocks(module: ast.Module, base: Path, sources: dict[str, str],
                   include: tuple[str | Path, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Blocks made visible by `import`, as (name, (BlockDef, library of its file)) pairs.

    A block's library maps every block name visible in the file that defines it,
    so an imported block can use its neighbours and its own imports. Imports stay
    inside ``base`` (the spec's folder) and the ``include`` folders.
    """
    roots = tuple(Path(r).resolve() for r in (base, *include))
    yield from Importer(roots, sources).visible(module, base, ()).items()


class Importer:
    """Resolves the imports of one build: confined to ``roots``, each file read and parsed once.

    Without the memo a file that imports the next one twice, 14 levels deep, was
    parsed 2**14 times; with it every file costs one read, one parse, one walk.
    An error names the import and the path, never a line of a file that is not a
    `.flash` spec inside the roots (`import "/proc/self/environ"` prints nothing of it).
    """

    def __init__(self, roots: tuple[Path, ...], sources: dict[str, str]) -> None:
        self.roots, self.sources = roots, sources
        self.done: dict[Path, dict[str, Any]] = {}

    def visible(self, module: ast.Module, base: Path, stack: tuple[Path, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for imp in module.imports:
            target = self.resolve(imp, base)
            if target in stack:
                raise error(imp.span, f"import cycle: {imp.path} imports itself")
            available = self.library(target, imp, stack)
            if imp.names is None:
                out.update(available)
                continue
            for name in imp.names:
                if name.id not in available:
                    raise error(name.span, f"{imp.path} has no block `{name.id}`", did_you_mean(name.id, available))
                out[name.id] = available[name.id]
        return out

    def library(self, target: Path, imp: ast.Import, stack: tuple[Path, ...]) -> dict[str, Any]:
        """Every block the file ``target`` makes visible (memoised)."""
        if target in self.done:
            return self.done[target]
        if len(stack) >= MAX_IMPORT_DEPTH:
            raise error(imp.span, f"imports nest more than {MAX_IMPORT_DEPTH} files deep")
        text = self.read(target, imp)
        self.sources[str(target)] = text
        other = parse(text, str(target))
        problems = check_declarations(other) + check_duplicates(other)
        if problems:
            raise FlashError(problems, self.sources)
        available = dict(self.visible(other, target.parent, (*stack, target)))
        for m in other.models:
            available.update({s.name: (s, available) for s in m.body if isinstance(s, ast.BlockDef)})
        self.done[target] = available
        return available

    def resolve(self, imp: ast.Import, base: Path) -> Path:
        """The real path of an import, checked to be a `.flash` regular file inside the roots."""
        def refuse(why: str, hint: str | None = None) -> FlashError:
            shown = imp.path if imp.path.isprintable() else repr(imp.path)
            return error(imp.span, f"cannot import {shown}: {why}", hint)

        candidate = base / imp.path  # an absolute path replaces base
        if "\x00" in imp.path or candidate.suffix != SUFFIX:
            raise refuse(f"only {SUFFIX} files can be imported")
        try:
            target = candidate.resolve(strict=True)
            info = target.stat()
        except FileNotFoundError:
            raise refuse("no such file") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise refuse(f"cannot resolve it ({getattr(exc, 'strerror', None) or 'a symlink loop'})") from None
        if not any(target.is_relative_to(root) for root in self.roots):
            raise refuse("it is outside the spec's folder",
                         "imports stay inside the spec's folder tree; add a folder with `--include DIR` "
                         "(`include=` in flashc.load)")
        if target.suffix != SUFFIX:
            raise refuse(f"it links to a file that is not a {SUFFIX} spec")
        if not stat.S_ISREG(info.st_mode):
            raise refuse("it is not a regular file")
        if info.st_size > MAX_SPEC_BYTES:
            raise refuse(f"it is {info.st_size:,} bytes, above the limit of {MAX_SPEC_BYTES:,} for a spec")
        return target

    def read(self, target: Path, imp: ast.Import) -> str:
        try:
            return read_source(target)
        except FlashError as exc:
            d = exc.diagnostics[0]
            if d.span.line >= 1:  # a position inside the file (invalid UTF-8): point there, quoting nothing
                raise FlashError(exc.diagnostics, {}) from None
            raise error(imp.span, f"cannot import {imp.path}: {d.message}") from None
