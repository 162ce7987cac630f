"""Secrets out of every sentence: the one filter between a message and a reader.

A configuration value, an exception's text or a traceback can carry a secret that taydash
never meant to repeat: a ``user:password@`` in a URL someone pasted, or the value of a
credential variable that a library put into its error. Everything taydash prints (the
output module's sentences and log records) and writes (crash logs) passes :func:`redact`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

MASK = "***"

# The variables whose values are secrets wherever they appear (the S3 pairs' secret halves,
# PostgreSQL's password and the AWS session token).
SECRET_VARS = (
    "TAYDASH_S3_SECRET_KEY",
    "MINIO_ROOT_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
)

# scheme://user:password@ and scheme://token@ (a bare token before @ is a secret in http(s)
# URLs; ssh://git@host names a user and stays).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/@'\"]+)@")

# Shorter values would mask ordinary words ("a", "postgres") and hide what went wrong.
_MIN_SECRET = 4


def _userinfo(match: re.Match[str]) -> str:
    scheme, info = match.group(1), match.group(2)
    user, colon, _ = info.partition(":")
    if colon:
        return f"{scheme}{user}:{MASK}@"
    if scheme.lower().startswith("http"):
        return f"{scheme}{MASK}@"
    return match.group(0)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with URL passwords and the values of :data:`SECRET_VARS` replaced by ``***``."""
    env = os.environ if env is None else env
    text = _USERINFO.sub(_userinfo, text)
    for name in SECRET_VARS:
        value = env.get(name, "")
        if len(value) >= _MIN_SECRET and value in text:
            text = text.replace(value, MASK)
    return text
