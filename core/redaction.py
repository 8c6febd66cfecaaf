"""Secrets kept out of what leaves the app: replies, tool steps, the log, exports and the console."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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

    def joined(self, parts: Sequence[str], separator: str) -> str:
        """The parts joined by separator, with a secret masked even where it is cut across two of them
        (a tool result in several content blocks)."""
        whole = "".join(parts)
        spans: list[list[int]] = []
        for secret in self.secrets:
            start = whole.find(secret)
            while start != -1:
                spans.append([start, start + len(secret)])
                start = whole.find(secret, start + 1)
        merged: list[list[int]] = []
        for span in sorted(spans):
            if merged and span[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], span[1])
            else:
                merged.append(span)
        shown, offset = [], 0
        for part in parts:
            end, kept, at = offset + len(part), [], offset
            for start, stop in merged:
                if stop <= offset or start >= end:
                    continue
                kept.append(whole[at : max(start, offset)])
                if start >= offset:  # a span begun in an earlier part was masked there
                    kept.append(MASK)
                at = min(stop, end)
            kept.append(whole[at:end])
            shown.append("".join(kept))
            offset = end
        return separator.join(shown)

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
