"""Any OpenAI-compatible server, through the official SDK."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx2
import openai

from config import Settings
from core.events import Event, Finish, GenerationParams, Notice, Reasoning, ToolCallDelta, Usage
from core.history import Message
from providers.base import ChatBackend

TOOLS_REFUSED = "This model does not accept tools here, so it answered without them."


class OpenAICompatible(ChatBackend):
    in_process = False
    accepts_images = True  # whether the model can see them (or use tools) is the provider's to say
    accepts_tools = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        base_url, api_key = self.connect()
        self.client = openai.AsyncOpenAI(
            # Local servers (Ollama, vLLM, llama.cpp) take no key, but the SDK insists on one.
            api_key=api_key or "no-key",
            base_url=base_url,
            timeout=openai.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
            max_retries=settings.max_retries,
        )
        # Usage comes in a last chunk when asked for with stream_options. Some servers refuse the
        # parameter (Mistral with 422, some gateways with 400); after one refusal it is left out.
        self.ask_for_usage = True
        self.refuse_tools: set[str] = set()  # models whose server answered 400/422 to `tools`

    def connect(self) -> tuple[str | None, str | None]:
        """The server's base URL and the key to send it."""
        return self.settings.base_url, self.settings.api_key

    def _request(self, messages: list[Message], params: GenerationParams):
        """The request, sent when entered: the SDK's auth, retries and status errors, with the body left raw."""
        extra: dict = {"stream_options": {"include_usage": True}} if self.ask_for_usage else {}
        if params.tools:
            extra["tools"] = list(params.tools)
        return self.client.chat.completions.with_streaming_response.create(
            model=params.model or self.settings.model,
            messages=messages,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            stream=True,
            **extra,
        )

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]:
        model = params.model or self.settings.model
        if params.tools and model in self.refuse_tools:
            messages, params = without_tools(messages), replace(params, tools=())
        # The exit stack closes the HTTP response however this generator ends: Stop, error or done.
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):  # at most one retry for each refused parameter; nothing was shown yet
                try:
                    response = await stack.enter_async_context(self._request(messages, params))
                    break
                except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                    said = (str(exc.body) + exc.message).lower()
                    if self.ask_for_usage and "stream_options" in said:
                        self.ask_for_usage = False
                    elif params.tools and "tool" in said:  # Ollama, vLLM: "does not support tools", ...
                        self.refuse_tools.add(model)
                        messages, params = without_tools(messages), replace(params, tools=())
                        yield Notice(TOOLS_REFUSED)
                    else:
                        raise
            else:
                raise RuntimeError("the provider refused the request three times")
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
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            out.append(
                ToolCallDelta(
                    call.get("index") or 0,
                    call.get("id") or "",
                    function.get("name") or "",
                    function.get("arguments") or "",
                )
            )
        if reason := choice.get("finish_reason"):
            out.append(Finish(reason, chunk.get("model") or ""))
    return out


def without_tools(messages: list[Message]) -> list[Message]:
    """The conversation for a model offered no tools: tool results and calls left out, text kept."""
    kept: list[Message] = []
    for message in messages:
        if message["role"] == "tool":
            continue
        if "tool_calls" in message:
            message = {"role": "assistant", "content": message["content"]}
        if kept and kept[-1]["role"] == message["role"] == "assistant":  # the text around a tool call: one turn
            message = {"role": "assistant", "content": f"{kept.pop()['content']}\n\n{message['content']}".strip()}
        if message["content"]:
            kept.append(message)
    return kept
