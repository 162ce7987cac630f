"""The release-tag policy: naming, tag objects, signatures -> one verdict per tag."""

from __future__ import annotations
