"""git's hook entries: stdin -> ref updates -> one typed result per ref -> one report.

``main`` is what the shims run; ``fast_path`` answers re-pushes without the full
import graph; ``report`` is the one place a per-ref result becomes text.
"""

from __future__ import annotations
