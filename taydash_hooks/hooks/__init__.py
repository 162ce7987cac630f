"""git's hook entries, a leaf adapter: stdin -> ref updates -> the checks -> one report.

``main`` is what the shims run. Each flavour (pre-push, pre-receive, reference-transaction,
the pre-commit ids) only reads git's input (:mod:`taydash_hooks.updates`), picks its checks
(:mod:`.checks`) and renders the typed results (:mod:`.report`); the checks themselves live
in the domain (``gate/``, ``tags/``, ``snapshots/``), which never imports this package.
The pre-push fast path belongs to the gate (:mod:`taydash_hooks.gate.fast_path`).
"""

from __future__ import annotations
