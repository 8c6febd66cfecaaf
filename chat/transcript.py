"""Export a conversation as Markdown or JSON with the exact config it ran with; import the JSON back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config import VERSION, chat_controls
from core.history import files_of, text_of
from core.reply import STATS

FORMAT = "gradio-stream-chat"


class ImportProblem(Exception):
    """Why a file cannot be imported, in a sentence."""


@dataclass(frozen=True)
class ChatConfig:
    """What produced a conversation: everything needed to continue it, except the key."""

    provider: str
    base_url: str | None
    model: str
    chosen: Mapping[str, Any]  # the chat's own settings by name (config.chat_controls()): system prompt, ...

    def as_dict(self) -> dict[str, Any]:
        """Flat, as an export's "config" holds it: provider, base_url, model, then each setting by name."""
        return {"provider": self.provider, "base_url": self.base_url, "model": self.model, **self.chosen}


def _messages(history: Any) -> list[dict]:
    """The conversation as plain JSON: role, text, and the metadata of thinking and stats."""
    out = []
    for entry in history if isinstance(history, list) else []:
        if not isinstance(entry, dict) or entry.get("role") not in ("user", "assistant"):
            continue
        message: dict = {"role": entry["role"], "content": text_of(entry.get("content"))}
        metadata = entry.get("metadata")
        if isinstance(metadata, dict) and metadata.get("title"):
            message["metadata"] = {k: v for k, v in metadata.items() if v is not None}
        if files := files_of(entry.get("content")):
            message["files"] = [Path(path).name for path in files]  # names only: the files stay here
        out.append(message)
    return out


def to_json(history: Any, config: ChatConfig) -> str:
    document = {
        "format": FORMAT,
        "app_version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.as_dict(),
        "messages": _messages(history),
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def to_markdown(history: Any, config: ChatConfig) -> str:
    c = config
    lines = [
        "# Chat",
        "",
        f"- Provider: {c.provider}" + (f" ({c.base_url})" if c.base_url else ""),
        f"- Model: {c.model}",
        "- " + " · ".join(f"{s.flag.label} {c.chosen[s.name]:g}" for s in chat_controls() if s.kind is not str),
        f"- System prompt: {c.chosen.get('system_prompt') or '(none)'}",
        f"- Exported by gradio-stream-chat {VERSION}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]
    for message in _messages(history):
        metadata = message.get("metadata") or {}
        if metadata.get("title") == STATS:
            lines += ["", f"*{metadata.get('log', '')}*"]
            continue
        if metadata.get("title"):
            duration = f" ({metadata['duration']} s)" if "duration" in metadata else ""
            summary = f"{metadata['title']}{duration}"
            lines += ["", f"<details><summary>{summary}</summary>", "", message["content"], "", "</details>"]
            continue
        lines += ["", f"## {message['role'].capitalize()}", ""]
        lines += [f"[attached: {name}]" for name in message.get("files", [])]
        lines.append(message["content"])
    return "\n".join(lines) + "\n"


def from_json(text: str | bytes) -> tuple[list[dict], ChatConfig]:
    """The history and config in an exported file; ImportProblem says what is wrong with it."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ImportProblem("The file is not JSON. Import a .json file exported from this app.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ImportProblem("The file is not a conversation exported from this app.")
    raw = document.get("config")
    try:
        # By name: a setting the file lacks (exported before it existed) is left to the app's default.
        chosen = {s.name: s.kind(raw[s.name]) for s in chat_controls() if raw.get(s.name) is not None}
        config = ChatConfig(str(raw["provider"]), raw.get("base_url"), str(raw["model"]), chosen)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ImportProblem("The file's config is incomplete or damaged.") from None
    history = []
    for message in document.get("messages") or []:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("user", "assistant")
            or not isinstance(message.get("content"), str)
        ):
            raise ImportProblem("The file's messages are damaged: each needs a user or assistant role and text.")
        entry: dict = {"role": message["role"], "content": message["content"]}
        metadata = message.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("title"), str):
            allowed = {"title": str, "log": str, "duration": (int, float)}
            kept = {k: v for k, v in metadata.items() if k in allowed and isinstance(v, allowed[k])}
            entry["metadata"] = kept | {"status": "done"}  # folded, and no spinner for a thought long finished
        if not entry["content"] and "metadata" not in entry:
            continue
        history.append(entry)
    return history, config
