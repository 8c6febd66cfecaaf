"""Any OpenAI-compatible server, through the official SDK."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import httpx2
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

    def _request(self, messages: list[Message], params: GenerationParams):
        """The request, sent when entered: the SDK's auth, retries and status errors, with the body left raw."""
        usage = {"stream_options": {"include_usage": True}} if self.ask_for_usage else {}
        return self.client.chat.completions.with_streaming_response.create(
            model=params.model or self.settings.model,
            messages=messages,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            stream=True,
            **usage,
        )

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]:
        # The exit stack closes the HTTP response however this generator ends: Stop, error or done.
        async with contextlib.AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(self._request(messages, params))
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if not (self.ask_for_usage and "stream_options" in str(exc.body) + exc.message):
                    raise
                self.ask_for_usage = False  # nothing was shown yet, so asking again is safe
                response = await stack.enter_async_context(self._request(messages, params))
            async for event in events(response.http_response):
                yield event

    async def list_models(self) -> list[str]:
        return sorted([model.id async for model in self.client.models.list()])

    async def aclose(self) -> None:
        await self.client.close()


async def events(response: httpx2.Response) -> AsyncIterator[Event]:
    """A chat completion's Server-Sent Events, read as lines and plain JSON.

    The SDK's typed chunks cost about twice the CPU per chunk on a stream that trickles in
    (measured: ~300 µs against ~140, the wake-up for each chunk included). This keeps
    what they gave us: an `error` payload raises openai.APIError, a stall
    openai.APITimeoutError, a lost connection openai.APIConnectionError, and a chunk
    that is not JSON json.JSONDecodeError, as the SDK's own stream does.
    """
    data: list[str] = []
    try:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif not line and data:  # a blank line ends an event
                payload, data = "\n".join(data), []
                for event in _chunk_events(payload, response):
                    yield event
        if data:  # a last event without its blank line
            for event in _chunk_events("\n".join(data), response):
                yield event
    except httpx2.TimeoutException as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    except httpx2.RequestError as exc:
        raise openai.APIConnectionError(request=response.request) from exc


def _chunk_events(payload: str, response: httpx2.Response) -> list[Event]:
    if payload == "[DONE]":
        return []  # the body ends after it; reading on to its end lets the connection be reused
    chunk = json.loads(payload)
    if not isinstance(chunk, dict):
        raise json.JSONDecodeError("a chunk is not a JSON object", payload, 0)
    if error := chunk.get("error"):
        message = error.get("message") if isinstance(error, dict) else None
        raise openai.APIError(
            message if isinstance(message, str) and message else "An error occurred during streaming",
            response.request,
            body=error,
        )
    out: list[Event] = []
    if usage := chunk.get("usage"):
        out.append(Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0))
    for choice in chunk.get("choices") or ():  # empty in the usage chunk
        delta = choice.get("delta") or {}
        # Beyond OpenAI's schema: DeepSeek and vLLM send reasoning_content; Ollama, OpenRouter reasoning.
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thought, str) and thought:
            out.append(Reasoning(thought))
        if content := delta.get("content"):
            out.append(content)
        if reason := choice.get("finish_reason"):
            out.append(Finish(reason))
    return out
