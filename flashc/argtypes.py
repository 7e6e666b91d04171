"""Argument types shared by the command-line front ends (`flashc` and `flashc generate`).

They live apart from `cli.py` so a sub-command module can use them without importing
the whole command line back (no import circle).
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (`--epochs 0` or `-3` is a usage error, not "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value
