"""Loading the grammar: Lark's LALR tables, cached on disk so start-up does not rebuild them.

Building the tables takes a few hundred milliseconds on every run; `flashc check`
of a small spec and the language server should answer at once. The tables are
pickled by Lark into a per-user cache directory (``$FLASHC_CACHE_DIR``, else
``$XDG_CACHE_HOME/flashc``, else ``~/.cache/flashc``), in a file named after the
grammar's hash and the Lark and Python versions, so an edited grammar or an
upgrade never loads stale tables. The directory is created private (0700):
a pickle is only ever read from a place only this user can write. Any failure
(read-only home, full disk, a corrupt file) falls back silently to building the
tables in memory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
from importlib import resources
from pathlib import Path

import lark
from lark import Lark

OPTIONS = {"parser": "lalr", "propagate_positions": True, "maybe_placeholders": True}


def grammar_text() -> str:
    return resources.files("flashc.syntax").joinpath("flash.lark").read_text(encoding="utf-8")


def cache_dir() -> Path:
    """Where this user's cached tables live (not created here)."""
    explicit = os.environ.get("FLASHC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flashc"


def cache_file(text: str, **options: object) -> Path:
    """The cache file for this grammar text, these options, this Lark and this Python."""
    key = repr((text, sorted(options.items()), lark.__version__, sys.version_info[:2]))
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return cache_dir() / f"grammar-{digest}.lark-cache"


def _private_dir(path: Path) -> bool:
    """Create ``path`` (0700) if needed; True when it is a directory this user owns and may write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return owner_ok and os.access(path, os.W_OK)


def load(text: str, **extra: object) -> Lark:
    """A Lark LALR parser for ``text``, from the on-disk cache when it can be."""
    options = {**OPTIONS, **extra}
    target = cache_file(text, **options)
    if not _private_dir(target.parent):
        return Lark(text, **options)
    # A missing, truncated or foreign cache file is rebuilt, as if there were no cache.
    with contextlib.suppress(Exception), target.open("rb") as f:
        return Lark.load(f)
    parser = Lark(text, **options)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with partial.open("wb") as f:
            parser.save(f)
        os.replace(partial, target)  # readers never see a half-written file
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return parser


@functools.cache
def flash_parser() -> Lark:
    """The .flash parser, built (or loaded) once per process."""
    return load(grammar_text())
