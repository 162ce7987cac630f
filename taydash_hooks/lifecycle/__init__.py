"""The deliberate steps of the backup lifecycle, as core: backup (clean tree, validate,
signed tag, snapshots, push), and the verification of one release that ``verify`` and
``drill`` run. The commands in ``commands/`` only print what these return."""

from __future__ import annotations
