"""What every backend is: a class with one streaming method that yields the reply as events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from core.events import Event, GenerationParams
from core.history import Message

if TYPE_CHECKING:
    from config import Settings


class ChatBackend:
    """A source of replies. Subclass it, write stream(), and register it in providers/registry.py.

    The class attributes say how the backend differs from others; the app asks them
    rather than guessing from the provider's name.
    """

    in_process: ClassVar[bool] = True  # False: it talks to settings.base_url, with settings.api_key if any
    accepts_images: ClassVar[bool] = False  # image_url content parts may be sent
    accepts_tools: ClassVar[bool] = False  # OpenAI-format `tools` may be offered
    max_concurrency: ClassVar[int | None] = None  # replies it can stream at once; None: as --concurrency says
    default_model: ClassVar[str | None] = None  # the model name when --model is not given; None: the provider's name

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def configure(cls, settings: Settings) -> Settings:
        """Check and complete the settings at startup; raise config.ConfigError with one sentence."""
        return settings if settings.model else replace(settings, model=cls.default_model or settings.provider)

    def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]:
        """Yield the reply as it arrives: answer text as str, then Finish; Reasoning and
        Usage when the provider sends them; ToolCallDelta when params.tools were offered and
        the model calls them (then Finish("tool_calls")).

        `messages` are OpenAI chat messages: {"role": "system" | "user" | "assistant" | "tool",
        "content": ...}, where content is a string, or a list of OpenAI content parts
        ({"type": "text", "text": ...}, {"type": "image_url", ...}) when the user attached
        something. With tools, an assistant message may carry "tool_calls", and "tool"
        messages ({"role": "tool", "tool_call_id": ..., "content": ...}) follow it.
        Raise core.errors.ContextTooLong if the conversation does not fit; let provider errors
        propagate.
        """
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        """The models this backend can serve."""
        return [self.settings.model]

    async def aclose(self) -> None:
        """Release the backend's connections or model (the app's backend lives as long as the app)."""
