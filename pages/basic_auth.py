"""HTTP Basic auth with --auth's logins, for the routes Gradio's login does not cover (/mcp/, /api/chat)."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence

NEEDS_LOGIN = "This chat needs a login (--auth)."


def basic_user(authorization: str, logins: Sequence[tuple[str, str]]) -> str | None:
    """The user an Authorization header logs in, if it names one of the logins; None otherwise."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    matches = [
        secrets.compare_digest(user.encode(), known.encode()) & secrets.compare_digest(password.encode(), word.encode())
        for known, word in logins
    ]
    return user if any(matches) else None
