"""A streaming chat app: Gradio's ChatInterface in front of any OpenAI-compatible
provider, or an embedded local model when none is configured.

    python app.py                        # the embedded SmolLM2 model: no key, no network
    OPENAI_API_KEY=sk-... python app.py  # OpenAI
    python app.py --help                 # every flag and environment variable
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import AsyncIterator

import gradio as gr

from config import LOCAL, ConfigError, Settings, load_settings
from errors import RETRY, describe, with_notice
from guards import RateLimiter, admit, message_problem, trim_history
from history import to_provider_messages
from providers.base import GenerationParams
from providers.registry import create_backend
from relay import coalesce

EXAMPLES = ["Why is the sky blue?", "Write a haiku about the sea.", "Explain recursion to a child."]


def client_ip(request: gr.Request) -> str:
    # Behind a proxy (as on Hugging Face Spaces) the first X-Forwarded-For address is the user's.
    forwarded = request.headers.get("x-forwarded-for", "")
    return forwarded.split(",")[0].strip() or (request.client.host if request.client else "unknown")


def build_app(settings: Settings) -> gr.ChatInterface:
    backend = create_backend(settings)
    per_session = RateLimiter(settings.rate_limit_session)
    per_ip = RateLimiter(settings.rate_limit_ip)

    def validate(message: str) -> dict:
        """Checked in the browser before a message is sent; the API goes through chat()."""
        problem = message_problem(message, settings.max_message_chars)
        return gr.validate(problem is None, problem or "")

    async def chat(
        message: str,
        history: list[dict],
        system_prompt: str,
        temperature: float,
        max_tokens: float,
        top_p: float,
        request: gr.Request,
    ) -> AsyncIterator[str]:
        """Stream the assistant's reply to `message`, given the conversation so far."""
        if problem := message_problem(message, settings.max_message_chars):
            raise gr.Error(problem)  # the conversation stays as it was
        if wait := admit((per_session, request.session_hash or ""), (per_ip, client_ip(request))):
            too_fast = f"You are sending messages faster than this demo allows. Wait {math.ceil(wait)} s, then retry."
            yield with_notice("", too_fast)
            return
        text = ""
        try:
            messages, dropped = trim_history(
                to_provider_messages(system_prompt, history, message), settings.max_history_chars
            )
            if dropped:
                gr.Info(f"The {dropped} oldest messages were left out to keep the conversation within its limit.")
            params = GenerationParams(temperature=temperature, max_tokens=int(max_tokens), top_p=top_p)
            async for text in coalesce(backend.stream(messages, params), settings.update_interval, settings.deadline):
                yield text
        except Exception as exc:  # every failure becomes a line in the chat; the text so far stays
            yield with_notice(text, describe(exc, settings, partial=bool(text)))
            return
        if not text:
            yield with_notice("", f"The model sent an empty reply. {RETRY}.")

    demo = gr.ChatInterface(
        chat,
        api_name="chat",
        title="Chat",
        description=f"Streaming replies from **{settings.model}** ({settings.provider}).",
        additional_inputs=[
            gr.Textbox(settings.system_prompt, label="System prompt", lines=3),
            gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature"),
            gr.Slider(
                1, settings.max_tokens_limit, value=min(1024, settings.max_tokens_limit), step=1, label="Max tokens"
            ),
            gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p"),
        ],
        additional_inputs_accordion=gr.Accordion("Model settings", open=False),
        examples=[[example] for example in EXAMPLES],
        cache_examples=False,  # caching would call the provider at startup (eagerly, on Spaces)
        editable=True,
        validator=validate,
        # One Llama context generates one reply at a time; others wait with their queue position shown.
        concurrency_limit=1 if settings.provider == LOCAL else settings.concurrency,
        analytics_enabled=False,
    )
    # A bounded queue: past this many waiting requests, newcomers are told the app is busy.
    return demo.queue(max_size=settings.queue_size)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(argv)
        demo = build_app(settings)
    except ConfigError as exc:
        sys.exit(f"Error: {exc}")
    print(settings.describe(), flush=True)
    demo.launch(server_name=settings.host, server_port=settings.port, auth=list(settings.auth) or None)


if __name__ == "__main__":
    main()
