"""What every backend is: a class with one streaming method that yields the reply as events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

from history import Message

if TYPE_CHECKING:
    from config import Settings


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
        Raise errors.ContextTooLong if the conversation does not fit; let provider errors
        propagate.
        """
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        """The models this backend can serve."""
        return [self.settings.model]

    async def aclose(self) -> None:
        """Release the backend's connections or model (the app's backend lives as long as the app)."""
