"""Where the command line writes: never over one of its own inputs, never into nowhere.

Each command checks its output path before any work: a folder where a file is
wanted (or a file where the run directory should be) is an error naming the
path; a missing parent folder and an output that *is* one of the command's
inputs (`compile x.flash -o x.flash`) are usage errors. The writes themselves
are atomic (:func:`flashc.weights.atomic_files`), so a failure later, such as
a full disk, still leaves any earlier output untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from flashc.diagnostics import Span, UsageError, error


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through links, `..` or a different spelling)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def _not_an_input(out: Path, inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    for role, path in inputs:
        if path is not None and same_file(out, path):
            raise UsageError(f"-o {out} is the {role} ({path}); refusing to overwrite an input, choose another name")


def check_output_file(out: Path, inputs: Iterable[tuple[str, str | Path | None]] = (),
                      also: Iterable[Path] = ()) -> None:
    """``out`` (and files written beside it, ``also``) can be created or replaced without losing an input."""
    if out.is_dir():
        raise error(Span.nowhere(str(out)), "is a directory; -o needs a file name", f"e.g. -o {out / 'model.onnx'}")
    parent = out.parent
    if not parent.is_dir():
        raise UsageError(f"the output folder {parent} does not exist (-o {out}); create it first")
    inputs = list(inputs)
    for target in (out, *also):
        _not_an_input(target, inputs)


def check_output_dir(out: Path, inputs: Iterable[tuple[str, str | Path | None]] = ()) -> None:
    """``out`` can hold a run: a directory or nothing yet, and no input file."""
    _not_an_input(out, list(inputs))
    if out.exists() and not out.is_dir():
        raise error(Span.nowhere(str(out)), "exists and is not a directory; -o names the run directory",
                    f"choose a new name, e.g. -o {out.with_suffix('')}_run")
