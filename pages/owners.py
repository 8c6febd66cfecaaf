"""Who a conversation belongs to: the signed-in user, or an anonymous visitor by an id the server issues in a cookie.

The id is unguessable, HttpOnly (a page's script cannot read it) and never in a URL, unlike Gradio's
session_hash. What the app keeps and logs is a hash of it, so the log holds no credential."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

COOKIE = "chat_owner"
MAX_AGE = 365 * 24 * 3600  # a year: the visitor's conversations stay theirs as long as the browser keeps it
_ISSUED = re.compile(r"[A-Za-z0-9_-]{32}")  # what issue() makes; anything else is not ours


def issue() -> str:
    return secrets.token_urlsafe(24)


def cookie_owner(cookie_header: str) -> str | None:
    """The owner a Cookie header names (a hash of the id we issued), or None without a valid one."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except Exception:  # a malformed header names no owner
        return None
    morsel = jar.get(COOKIE)
    if morsel is None or not _ISSUED.fullmatch(morsel.value):
        return None
    return "visitor-" + hashlib.sha256(morsel.value.encode()).hexdigest()[:32]


def hf_account(scope: Mapping[str, Any]) -> str | None:
    """The Hugging Face account signed in on this request (a Space with hf_oauth), by its id, which a rename
    keeps; None when nobody is. Gradio keeps the sign-in in its session cookie, signed with the Space's OAuth
    secret, so a browser cannot forge one."""
    session = scope.get("session")  # there only when Gradio's sign-in (its SessionMiddleware) is on
    signed_in = session.get("oauth_info") if isinstance(session, Mapping) else None
    if not isinstance(signed_in, Mapping):
        return None
    if (expires := signed_in.get("expires_at")) is not None and expires < time.time():  # signed out, as Gradio
        return None
    account = (signed_in.get("userinfo") or {}).get("sub")
    return account if isinstance(account, str) and account else None


def owner(cookie_header: str, username: str | None, hf_user: str | None = None) -> str | None:
    """Whose conversation this is: the user's who signed in (an --auth login, else a Hugging Face account),
    else the cookie's visitor's; None when neither (an API client that keeps no cookie: nobody can come back
    to its reply)."""
    if username:
        return f"user-{username}"
    return f"hf-{hf_user}" if hf_user else cookie_owner(cookie_header)


def set_cookie_header(value: str, secure: bool) -> bytes:
    # In Hugging Face's page a Space runs in a cross-site frame, where only a SameSite=None (so Secure)
    # cookie is sent; Partitioned keeps it to that frame (and lets browsers that block third-party cookies keep it).
    site = "SameSite=None; Secure; Partitioned" if secure else "SameSite=Lax"
    return f"{COOKIE}={value}; Max-Age={MAX_AGE}; Path=/; HttpOnly; {site}".encode()


class OwnerCookie:
    """ASGI middleware: a page sent to a browser without the owner cookie sets one; so does a GET of a path
    under `api` (/api/chat's chats: a page on another origin loads its chat first, and is then an owner)."""

    def __init__(self, app, api: tuple[str, ...] = ()) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if cookie_owner(headers.get(b"cookie", b"").decode("latin-1")) is not None:
            await self.app(scope, receive, send)
            return
        forwarded = headers.get(b"x-forwarded-proto", b"").decode("latin-1").split(",")[0].strip()
        secure = (forwarded or scope.get("scheme")) == "https"

        async def with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                response_headers = message.get("headers", [])
                kind = next((v for k, v in response_headers if k.lower() == b"content-type"), b"")
                # A page, not each of its files (they load in parallel); or an API read.
                if kind.startswith(b"text/html") or scope["path"].startswith(self.api):
                    cookie = (b"set-cookie", set_cookie_header(issue(), secure))
                    message = {**message, "headers": [*response_headers, cookie]}
            await send(message)

        await self.app(scope, receive, with_cookie)
