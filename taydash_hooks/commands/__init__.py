"""One module per CLI command: orchestrate, print, return an exit code.

cli.py wires click options to these functions; nothing below imports click.
"""

from __future__ import annotations
