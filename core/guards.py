"""Limits for a public demo: message size, history size, and how often one person may send."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass

from core.attachments import is_image
from core.history import Message, size_of


@dataclass(frozen=True)
class MessageLimits:
    """How much one message may carry (flags --max-message-chars, --max-files, --max-attachment-chars)."""

    chars: int  # typed text
    files: int = 5  # attachments
    attachment_chars: int = 100_000  # text files' contents, inlined into the message, all together


def message_problem(message: object, limits: MessageLimits) -> str | None:
    """Why a message (a string, or multimodal {"text": ..., "files": [...]}) cannot be sent; None if it can."""
    files = []
    if isinstance(message, dict):
        files, message = message.get("files") or [], message.get("text") or ""
    if not isinstance(message, str) or not (message.strip() or files):
        return "Type a message first."
    if len(message) > limits.chars:
        return (
            f"Your message is {len(message):,} characters long; the limit is {limits.chars:,}. "
            "Shorten it and send again."
        )
    if len(files) > limits.files:
        return f"That is {len(files)} files; a message may carry {limits.files}. Send fewer at a time."
    inlined = sum(_size(path) for path in files if isinstance(path, str) and not is_image(path))
    if inlined > limits.attachment_chars:
        return (
            f"The attached text is {inlined:,} characters long; a message may carry {limits.attachment_chars:,}. "
            "Attach less, or a shorter file."
        )
    return None


def _size(path: str) -> int:
    """A file's size in bytes: at least its characters (UTF-8 takes one or more bytes a character)."""
    try:
        return os.path.getsize(path)
    except OSError:  # not there: reading it will say so
        return 0


def trim_history(messages: list[Message], max_chars: int) -> tuple[list[Message], int]:
    """Drop the oldest turns until the conversation fits in max_chars.

    The system prompt and the newest message always stay. Returns the messages
    kept and how many were dropped."""
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(head) :]
    size = sum(map(size_of, messages))
    dropped = 0
    while size > max_chars and len(turns) > 1:
        size -= size_of(turns[0])
        turns = turns[1:]
        dropped += 1
    if turns and turns[0]["role"] == "assistant":  # a conversation starts with the user
        turns = turns[1:]
        dropped += 1
    return head + turns, dropped


class RateLimiter:
    """At most `per_minute` messages per key in any 60 seconds; 0 turns it off."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.sent: dict[str, deque[float]] = {}
        self.swept = float("-inf")

    def wait_needed(self, key: str) -> float:
        """Seconds to wait before this key may send; 0 means it may."""
        if not self.per_minute:
            return 0.0
        now = self.clock()
        times = self.sent.get(key)
        while times and now - times[0] >= self.WINDOW:
            times.popleft()
        return self.WINDOW - (now - times[0]) if times and len(times) >= self.per_minute else 0.0

    def record(self, key: str) -> None:
        if not self.per_minute:
            return
        now = self.clock()
        self.sent.setdefault(key, deque()).append(now)
        # Forget idle keys so memory stays bounded; at most once a window, not on every message.
        if len(self.sent) > 10_000 and now - self.swept >= self.WINDOW:
            self.sent = {k: v for k, v in self.sent.items() if v and now - v[-1] < self.WINDOW}
            self.swept = now


def admit(*checks: tuple[RateLimiter, str]) -> float:
    """Seconds to wait if any limiter refuses; otherwise 0, and the message counts against every one."""
    wait = max((limiter.wait_needed(key) for limiter, key in checks), default=0.0)
    if not wait:
        for limiter, key in checks:
            limiter.record(key)
    return wait
