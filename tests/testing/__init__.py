"""Importable helpers for the test-suite: real git, keys and services, no mocks."""

from __future__ import annotations
