"""What every backend provides: one streaming method that yields the reply as events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

from history import Message


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; Gradio's sliders and dropdown keep them valid, for the API too."""

    temperature: float = 0.7
    max_tokens: int = 1024
    top_p: float = 1.0
    model: str | None = None  # None: the configured model


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


# A plain string is answer text.
Event = str | Reasoning | Usage | Finish


class ChatBackend(Protocol):
    accepts_images: ClassVar[bool]  # whether image_url parts may be sent

    def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]:
        """Yield the reply as it arrives: answer text as str, then Finish; Reasoning and
        Usage when the provider sends them.

        Raise errors.ContextTooLong if the conversation does not fit; let provider
        errors propagate.
        """
        ...

    async def list_models(self) -> list[str]:
        """The models this backend can serve."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections or model (the app's backend lives as long as the app)."""
        ...
