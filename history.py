"""Gradio chat history -> the messages a provider receives."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from errors import without_notice


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


def text_of(content: Any) -> str:
    """The text in a history entry's content, whatever its shape.

    Through the API content is a string; from the browser it is a list of parts
    ({"type": "text", "text": ...}, {"type": "file", ...}). Files and anything
    else unexpected contribute no text.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)):
        texts = [
            part if isinstance(part, str) else part.get("text")
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and part.get("type", "text") == "text")
        ]
        return "\n".join(t for t in texts if isinstance(t, str))
    return ""


def to_provider_messages(system_prompt: str, history: Any, message: str) -> list[Message]:
    """The system prompt first, then the user/assistant turns, then the new message.

    Every call rebuilds this from scratch: a client can set the history with any
    roles and shapes, so only user and assistant text survives. Our own notices
    and titled annotations (metadata.title: thinking, tool use) are for the
    reader only. Consecutive turns of one role are merged, since some chat
    templates insist that roles alternate.
    """
    turns: list[Message] = []
    for entry in history if isinstance(history, (list, tuple)) else []:
        if not isinstance(entry, dict) or entry.get("role") not in ("user", "assistant"):
            continue
        metadata = entry.get("metadata")
        if isinstance(metadata, dict) and metadata.get("title"):
            continue
        text = text_of(entry.get("content"))
        if entry["role"] == "assistant":
            text = without_notice(text)
        _append(turns, entry["role"], text)
    _append(turns, "user", message)
    prompt: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return prompt + turns


def _append(turns: list[Message], role: Literal["user", "assistant"], text: str) -> None:
    if not text.strip():
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] += "\n\n" + text
    else:
        turns.append({"role": role, "content": text})
