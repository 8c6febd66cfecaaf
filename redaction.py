"""Secrets kept out of what leaves the app: replies, tool steps, the log, exports and the console."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[redacted]"


class Redactor:
    """Replaces each secret by [redacted]. While a reply streams, a tail that could be the start of a
    secret is held back until the next piece says what it is: a key split across two chunks is never
    shown half."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, text: str, *, streaming: bool = False) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if streaming:
            held = max((k for s in self.secrets for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            text = text[: len(text) - held]
        return text

    def messages(self, messages: list[dict], *, streaming: bool = False) -> list[dict]:
        """Chat messages with their text and stats redacted; only the last one can still be growing."""
        if not self.secrets:
            return messages
        shown = []
        for index, message in enumerate(messages):
            growing = streaming and index == len(messages) - 1
            content = message.get("content")
            message = {
                **message,
                "content": self.text(content, streaming=growing) if isinstance(content, str) else content,
            }
            if isinstance(metadata := message.get("metadata"), dict) and isinstance(metadata.get("log"), str):
                message["metadata"] = {**metadata, "log": self.text(metadata["log"])}
            shown.append(message)
        return shown


NO_SECRETS = Redactor()
