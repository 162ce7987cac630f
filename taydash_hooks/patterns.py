"""Custom name patterns (``[tags] naming = "regex:..."``), compiled by RE2.

A pattern comes from a configuration file and judges names that come from
whoever pushes: RE2 runs in time linear in the name, so no pattern can make a
hook hang. Configuration loading checks a pattern with the same compiler the
tag policy runs.
"""

from __future__ import annotations

from typing import Any


def compile_custom(pattern: str) -> Any:
    """``pattern`` compiled by RE2; raises ``ValueError`` with RE2's reason when it cannot be."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the reason goes into our sentence, not onto stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(reason) from None
