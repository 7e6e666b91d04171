"""`python -m flashc ...` is the `flashc` command (torchrun starts workers this way: `-m flashc train ...`)."""

import sys

from flashc.cli import main

if __name__ == "__main__":
    sys.exit(main())
