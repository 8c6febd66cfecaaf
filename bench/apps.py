"""The apps we measure ours against, each run as its own process by bench/run.py.

python -m bench.apps echo --port 7870
python -m bench.apps load_chat --port 7871 --base-url http://127.0.0.1:8911/v1
python -m bench.apps relay --port 7872 --base-url http://127.0.0.1:8911/v1
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator

import gradio as gr
import openai
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from testkit.fake_openai import SCRIPTED, numbered_tokens


def echo_app(concurrency: int) -> gr.ChatInterface:
    """The floor: a ChatInterface that yields its whole reply once, with no provider behind it.

    It answers a scripted message ("bench:N:MS") with the same text the loopback server
    would stream, so it moves the same bytes through Gradio and the client."""

    async def chat(message: str, history: list) -> AsyncIterator[str]:
        match = SCRIPTED.fullmatch(message.strip())
        yield "".join(numbered_tokens(int(match[1]))) if match else message

    return gr.ChatInterface(chat, api_name="chat", concurrency_limit=concurrency, analytics_enabled=False)


def load_chat_app(base_url: str, model: str) -> gr.ChatInterface:
    """Gradio's built-in peer, as its documentation shows it."""
    return gr.load_chat(base_url, model=model, token="bench-key")


def plain_relay_app(base_url: str, model: str) -> Starlette:
    """The least a streaming chat server can do: POST /chat {"messages": [...]} relays the SDK's
    stream as Server-Sent Events, one event per token. No UI, no history, no checks."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-key")

    async def chat(request: Request) -> StreamingResponse:
        messages = (await request.json())["messages"]

        async def events() -> AsyncIterator[str]:
            async with await client.chat.completions.create(model=model, messages=messages, stream=True) as stream:
                async for chunk in stream:
                    if chunk.choices and (text := chunk.choices[0].delta.content):
                        yield f"data: {json.dumps(text)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/chat", chat, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["echo", "load_chat", "relay"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", default="")
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.app == "relay":
        uvicorn.run(plain_relay_app(args.base_url, args.model), host="127.0.0.1", port=args.port, log_level="warning")
        return
    demo = echo_app(args.concurrency) if args.app == "echo" else load_chat_app(args.base_url, args.model)
    demo.launch(server_name="127.0.0.1", server_port=args.port, quiet=True)


if __name__ == "__main__":
    main()
