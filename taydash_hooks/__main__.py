"""`python -m taydash_hooks` runs the CLI."""

from __future__ import annotations

from taydash_hooks.cli import main

if __name__ == "__main__":
    main()
