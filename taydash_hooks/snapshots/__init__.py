"""Tag -> snapshots -> store -> manifest, and back (verify, restore, remove).

Each kind of snapshot (PostgreSQL, VictoriaMetrics, the config bundle) is one
module under ``kinds/`` registered in ``kinds/__init__.py``.
"""

from __future__ import annotations
