"""What a reply is made of as it streams (every backend yields these), and the settings it is asked with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; Gradio's sliders and dropdown keep them valid, for the API too. Each is declared
    in config.Settings (its flag, range and slider) under the same name."""

    temperature: float = 0.7
    max_tokens: int = 1024
    top_p: float = 1.0
    model: str | None = None  # None: the configured model
    tools: tuple[dict, ...] = ()  # OpenAI-format tools the model may call (only if the backend accepts_tools)

    @classmethod
    def of(cls, chosen: Mapping[str, Any], model: str | None = None) -> GenerationParams:
        """The sampling settings among a chat's settings by name (each a field here of the same name)."""
        names = {item.name for item in fields(cls)}
        return cls(model=model, **{name: value for name, value in chosen.items() if name in names})


@dataclass(frozen=True)
class Reasoning:
    """Text the model thinks before answering (shown folded, never sent back)."""

    text: str


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reports them."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Finish:
    """How the reply ended: "stop", "length", ... A stream without one is incomplete."""

    reason: str
    model: str = ""  # the model that answered, when the provider says


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: the call at `index` gets its id and name first, its JSON arguments in pieces."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Notice:
    """A remark for the reader about how the reply was made (e.g. tools were left out)."""

    text: str


# A plain string is answer text.
Event = str | Reasoning | Usage | Finish | ToolCallDelta | Notice
