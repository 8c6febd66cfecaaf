"""Any OpenAI-compatible server, through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai

from config import Settings
from history import Message
from providers.base import GenerationParams, raise_for_finish


class OpenAICompatible:
    def __init__(self, settings: Settings) -> None:
        self.model = settings.model
        self.client = openai.AsyncOpenAI(
            # Local servers (Ollama, vLLM, llama.cpp) take no key, but the SDK insists on one.
            api_key=settings.api_key or "no-key",
            base_url=settings.base_url,
            timeout=openai.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
            max_retries=settings.max_retries,
        )

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[str]:
        finish_reason = None
        # `async with` closes the HTTP response however this generator ends: Stop, error or done.
        async with await self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            stream=True,
        ) as chunks:
            async for chunk in chunks:
                for choice in chunk.choices:  # empty in a usage-only chunk
                    if choice.delta.content:
                        yield choice.delta.content
                    finish_reason = choice.finish_reason or finish_reason
        raise_for_finish(finish_reason)
