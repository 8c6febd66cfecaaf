"""Gradio chat history -> the messages a provider receives."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Protocol, TypedDict

from core.attachments import is_image, is_uploaded, read_part
from core.errors import REFUSED, ImagesNotSupported, UnreadableAttachment, without_notice

IMAGE_SIZE = 1000  # what an image counts for against the history limit, in characters


class Message(TypedDict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict]  # a list: OpenAI content parts (text and image_url)
    tool_calls: NotRequired[list[dict]]  # an assistant's calls, in OpenAI's format
    tool_call_id: NotRequired[str]  # a tool message: the call it answers


class ToolExchange(Protocol):
    step: str  # the calls of one step share it
    call: dict  # the assistant's tool_calls entry
    result: str


class ToolExchanges(Protocol):
    def get(self, record: object) -> ToolExchange | None: ...


def _parts(content: Any) -> list:
    if isinstance(content, (list, tuple)):
        return list(content)
    return [content]


def text_of(content: Any) -> str:
    """The text in a history entry's content, whatever its shape.

    Through the API content is a string; from the browser it is a list of parts
    ({"type": "text", "text": ...}, {"type": "file", ...}). Files and anything
    else unexpected contribute no text.
    """
    texts = [
        part if isinstance(part, str) else part.get("text")
        for part in _parts(content)
        if isinstance(part, str) or (isinstance(part, dict) and part.get("type", "text") == "text")
    ]
    return "\n".join(t for t in texts if isinstance(t, str))


def files_of(content: Any) -> list[str]:
    """The paths of the files in a history entry's content.

    From the browser a file is {"type": "file", "file": {"path": ...}}; in the
    history Gradio keeps for an API session it is {"path": ...}.
    """
    paths = []
    for part in _parts(content):
        if not isinstance(part, dict):
            continue
        file = part.get("file") if part.get("type") == "file" else part if "path" in part else None
        if isinstance(file, dict) and isinstance(file.get("path"), str):
            paths.append(file["path"])
    return paths


def as_history_entry(message: dict | str) -> dict:
    """The user's message as Gradio's ChatInterface adds it to the history it shows: files first, then the text."""
    if isinstance(message, str):
        return {"role": "user", "content": message}
    files = [{"path": file.get("path") if isinstance(file, dict) else file} for file in message.get("files") or []]
    return {"role": "user", "content": [*files, *([message["text"]] if message.get("text") else [])]}


def size_of(message: Message) -> int:
    """A message's size in characters, as the history limit counts it."""
    content = message["content"]
    if isinstance(content, str):
        return len(content)
    return sum(len(part["text"]) if part["type"] == "text" else IMAGE_SIZE for part in content)


def to_provider_messages(
    system_prompt: str, history: Any, message: Any, *, images: bool = True, exchanges: ToolExchanges | None = None
) -> list[Message]:
    """The system prompt first, then the user/assistant turns, then the new message.

    Every call rebuilds this from scratch: a client can set the history with any
    roles and shapes, so only user and assistant text (and files the user
    uploaded) survive. Our own notices and titled annotations (metadata.title:
    thinking, stats) are for the reader only. Consecutive turns of one role are
    merged, since some chat templates insist that roles alternate.

    A tool call shown in the chat goes back as the assistant's tool_calls and a tool
    message only if this server made it: its metadata id names an exchange kept in
    `exchanges`; a client can point at one, not write one.

    `message` is a string or a multimodal {"text": ..., "files": [...]}. With
    images=False (a backend that cannot see) an image in the new message raises
    ImagesNotSupported; images in earlier turns are left out.
    """
    turns: list[Message] = []
    steps: dict[int, str] = {}  # index in turns of an assistant message with tool_calls -> its step
    entries = list(history) if isinstance(history, (list, tuple)) else []
    refused = _refused(entries)
    for index, entry in enumerate(entries):
        if index in refused or not isinstance(entry, dict) or entry.get("role") not in ("user", "assistant"):
            continue
        metadata = entry.get("metadata")
        if isinstance(metadata, dict) and metadata.get("title"):
            if exchanges is not None and (exchange := exchanges.get(metadata.get("id"))):
                _append_exchange(turns, steps, exchange)
            continue
        content = entry.get("content")
        text = text_of(content)
        if entry["role"] == "assistant":
            _append(turns, "assistant", [_text(without_notice(text))])
            continue
        # A forged history may name any path: only files uploaded here are read.
        files = [path for path in files_of(content) if is_uploaded(path) and (images or not is_image(path))]
        _append(turns, "user", [_text(text), *filter(None, map(_readable, files))])
    if isinstance(message, dict):
        files = [path for path in message.get("files") or [] if isinstance(path, str)]
        if not images and any(map(is_image, files)):
            raise ImagesNotSupported
        _append(turns, "user", [_text(str(message.get("text") or "")), *map(read_part, files)])
    else:
        _append(turns, "user", [_text(message)])
    prompt: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return prompt + turns


def _refused(entries: list) -> set[int]:
    """The places of the messages the app refused (those a refusal notice answers), and of the notices."""
    refused: set[int] = set()
    asked: list[int] = []  # the user entries since the last answer (a message with files is several)
    for index, entry in enumerate(entries):
        role = entry.get("role") if isinstance(entry, dict) else None
        if role == "user":
            asked.append(index)
            continue
        metadata = entry.get("metadata") if isinstance(entry, dict) else None
        if role == "assistant" and isinstance(metadata, dict) and metadata.get("id") == REFUSED:
            refused.update([*asked, index])
        asked = []
    return refused


def _append_exchange(turns: list[Message], steps: dict[int, str], exchange: ToolExchange) -> None:
    """Add a tool call and its result: to the calls of its step if they are the last thing in
    `turns`, else to the assistant text just before it, else to a new assistant message."""
    calling = len(turns)
    while calling and turns[calling - 1]["role"] == "tool":
        calling -= 1
    calling -= 1  # the message before the tool results
    if not (calling < len(turns) - 1 and steps.get(calling) == exchange.step):
        if not (turns and turns[-1]["role"] == "assistant" and "tool_calls" not in turns[-1]):
            turns.append({"role": "assistant", "content": ""})
        calling = len(turns) - 1
        turns[calling]["tool_calls"] = []
        steps[calling] = exchange.step
    turns[calling]["tool_calls"].append(exchange.call)
    turns.append({"role": "tool", "tool_call_id": str(exchange.call.get("id", "")), "content": exchange.result})


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _readable(path: str) -> dict | None:
    """An earlier turn's file, or None if it cannot be read: the user was told when it was attached."""
    try:
        return read_part(path)
    except (UnreadableAttachment, OSError):
        return None


def _append(turns: list[Message], role: Literal["user", "assistant"], parts: list[dict]) -> None:
    """Add a turn, as a plain string when it is only text (every server takes that)."""
    parts = [part for part in parts if part["type"] != "text" or part["text"].strip()]
    if not parts:
        return
    if turns and turns[-1]["role"] == role:
        previous = turns[-1]["content"]
        parts = (_parts(previous) if isinstance(previous, list) else [_text(previous)]) + parts
        turns.pop()
    if all(part["type"] == "text" for part in parts):
        turns.append({"role": role, "content": "\n\n".join(part["text"] for part in parts)})
    else:
        turns.append({"role": role, "content": parts})
