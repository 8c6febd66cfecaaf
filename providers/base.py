"""What every backend provides: one streaming method that yields text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from errors import IncompleteReply, ReplyCutOff
from history import Message


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; Gradio's sliders keep them in range, for the API too."""

    temperature: float = 0.7
    max_tokens: int = 1024
    top_p: float = 1.0


class ChatBackend(Protocol):
    def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[str]:
        """Yield the reply's text as it arrives.

        Raise errors.ReplyCutOff if the reply hit max_tokens, errors.IncompleteReply
        if it ended without a finish reason, errors.ContextTooLong if the
        conversation does not fit; let provider errors propagate.
        """
        ...


def raise_for_finish(finish_reason: str | None) -> None:
    """Turn how a stream ended into the error a user should see, if any."""
    # Providers' SDKs raise nothing when a stream just stops; only a finish reason says it is whole.
    if finish_reason is None:
        raise IncompleteReply
    if finish_reason == "length":
        raise ReplyCutOff
