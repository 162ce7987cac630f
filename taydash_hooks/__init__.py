"""taydash-hooks: git hooks and a CLI for manual, deliberate backups.

Kept empty on purpose: the hook shims import submodules of this package on
every push, so nothing here may import anything heavy.
"""

from __future__ import annotations

__version__ = "0.1.0"
