"""Kept for shims installed before the package was split: they run
``python -m taydash_hooks.hook_main``. New shims call ``taydash_hooks.hooks.main``."""

from __future__ import annotations

from taydash_hooks.hooks.main import main

if __name__ == "__main__":
    main()
