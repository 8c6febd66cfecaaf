"""Review sign-ins: a cookie the server issues (HttpOnly, expiring); failed attempts slow their address down."""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storage.logs import LogStore, Unreadable

log = logging.getLogger("chat.review")

COOKIE = "chat_review"
LIFETIME_SECONDS = 8 * 3600  # a working day; then the reviewer signs in again
FREE_FAILURES = 3  # typos cost nothing; from the next failure on, each doubles the wait
MAX_WAIT_SECONDS = 300
FORGET_SECONDS = 3600  # an address quiet this long starts afresh
WRONG = "Wrong user name or password."


@dataclass
class _Failures:
    count: int
    not_before: float  # no attempt from the address is checked before this
    last: float


@dataclass(frozen=True)
class Attempt:
    """A sign-in's outcome: a token for the cookie, or why not and how long to wait."""

    token: str | None
    problem: str = ""
    wait: float = 0.0
    status: int = 200  # for the HTTP answer: 401 wrong, 429 not checked


class SignIns:
    """The reviewers' sign-ins: in the database replicas share (`shared`, a PostgreSQL store: by a hash of each
    token), else in this process's memory (a restart signs everyone out). Failed attempts are counted per process."""

    def __init__(
        self,
        logins: Sequence[tuple[str, str]],
        *,
        lifetime: float = LIFETIME_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        shared: LogStore | None = None,
    ) -> None:
        self.logins = tuple(logins)
        self.lifetime = lifetime
        self.clock = clock
        self.shared = shared if shared is not None and shared.shared else None
        self._tokens: dict[str, float] = {}  # token -> when it expires
        self._failures: dict[str, _Failures] = {}  # client address -> its recent failures
        self._lock = threading.Lock()  # Gradio runs handlers in threads; the routes run on the event loop

    def attempt(self, address: str, user: str, password: str) -> Attempt:
        now = self.clock()
        with self._lock:
            self._forget(now)
            failures = self._failures.get(address)
            if failures and now < failures.not_before:  # not even checked: a guess in the wait tells nothing
                wait = failures.not_before - now
                why = f"Too many failed sign-ins from your address: try again in {math.ceil(wait)} s."
                return Attempt(None, why, wait, 429)
            # compare_digest: the time taken says nothing about how much of a password was right
            given = user.encode(), password.encode()
            if not any(
                secrets.compare_digest(given[0], u.encode()) & secrets.compare_digest(given[1], p.encode())
                for u, p in self.logins
            ):
                count = (failures.count if failures else 0) + 1
                wait = 0.0 if count <= FREE_FAILURES else float(min(MAX_WAIT_SECONDS, 2 ** (count - FREE_FAILURES - 1)))
                self._failures[address] = _Failures(count, now + wait, now)
                log.warning("A review sign-in from %s failed (%d in a row)", address, count)
                why = WRONG + (f" Wait {math.ceil(wait)} s before trying again." if wait else "")
                return Attempt(None, why, wait, 401)
            self._failures.pop(address, None)
            token = secrets.token_urlsafe(32)
            if self.shared is not None:
                self.shared.keep_signin(hashed(token), datetime.now(UTC) + timedelta(seconds=self.lifetime))
            else:
                self._tokens[token] = now + self.lifetime
            return Attempt(token)

    def valid(self, token: str | None) -> bool:
        """Whether this is a signed-in reviewer's token (blocking: the shared database is asked)."""
        if not token:
            return False
        if self.shared is not None:
            try:
                expires = self.shared.signin_expires(hashed(token))
            except Unreadable:  # the database is down: nobody is let in meanwhile
                return False
            return expires is not None and expires.astimezone(UTC) > datetime.now(UTC)
        with self._lock:
            expires = self._tokens.get(token)
            if expires is not None and expires <= self.clock():
                del self._tokens[token]
                return False
            return expires is not None

    def sign_out(self, token: str | None) -> None:
        if self.shared is not None and token:
            self.shared.forget_signin(hashed(token))
        with self._lock:
            self._tokens.pop(token or "", None)

    def _forget(self, now: float) -> None:
        self._tokens = {token: expires for token, expires in self._tokens.items() if expires > now}
        self._failures = {a: f for a, f in self._failures.items() if now - f.last < FORGET_SECONDS}


def hashed(token: str) -> str:
    """What the database keeps of a token: not the token, which would let whoever reads it sign in."""
    return hashlib.sha256(token.encode()).hexdigest()
