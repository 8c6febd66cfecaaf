"""The apps we measure ours against, each run as its own process by bench/run.py.

python -m bench.apps echo --port 7870
python -m bench.apps load_chat --port 7871 --base-url http://127.0.0.1:8911/v1
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import gradio as gr

from tests.fake_openai import SCRIPTED, numbered_tokens


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["echo", "load_chat"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", default="")
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    demo = echo_app(args.concurrency) if args.app == "echo" else load_chat_app(args.base_url, args.model)
    demo.launch(server_name="127.0.0.1", server_port=args.port, quiet=True)


if __name__ == "__main__":
    main()
