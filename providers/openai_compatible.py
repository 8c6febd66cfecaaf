"""Any OpenAI-compatible server, through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai

from config import Settings
from history import Message
from providers.base import ChatBackend, Event, Finish, GenerationParams, Reasoning, Usage


class OpenAICompatible(ChatBackend):
    in_process = False
    accepts_images = True  # whether the model can see them (or use tools) is the provider's to say
    accepts_tools = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.client = openai.AsyncOpenAI(
            # Local servers (Ollama, vLLM, llama.cpp) take no key, but the SDK insists on one.
            api_key=settings.api_key or "no-key",
            base_url=settings.base_url,
            timeout=openai.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
            max_retries=settings.max_retries,
        )
        # Usage comes in a last chunk when asked for with stream_options. Some servers refuse the
        # parameter (Mistral with 422, some gateways with 400); after one refusal it is left out.
        self.ask_for_usage = True

    async def _open(self, messages: list[Message], params: GenerationParams):
        usage = {"stream_options": {"include_usage": True}} if self.ask_for_usage else {}
        return await self.client.chat.completions.create(
            model=params.model or self.settings.model,
            messages=messages,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            stream=True,
            **usage,
        )

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]:
        try:
            response = await self._open(messages, params)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if not (self.ask_for_usage and "stream_options" in str(exc.body) + exc.message):
                raise
            self.ask_for_usage = False  # nothing was shown yet, so asking again is safe
            response = await self._open(messages, params)
        # `async with` closes the HTTP response however this generator ends: Stop, error or done.
        async with response as chunks:
            async for chunk in chunks:
                if chunk.usage:
                    yield Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                for choice in chunk.choices:  # empty in the usage chunk
                    delta = choice.delta
                    # Beyond OpenAI's schema: DeepSeek and vLLM send reasoning_content; Ollama, OpenRouter reasoning.
                    thought = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
                    if isinstance(thought, str) and thought:
                        yield Reasoning(thought)
                    if delta.content:
                        yield delta.content
                    if choice.finish_reason:
                        yield Finish(choice.finish_reason)

    async def list_models(self) -> list[str]:
        return sorted([model.id async for model in self.client.models.list()])

    async def aclose(self) -> None:
        await self.client.close()
