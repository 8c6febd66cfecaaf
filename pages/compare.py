"""The /compare page: one message to two models (or two settings) at once, side by side, then a vote."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import gradio as gr

from core.errors import with_notice
from core.history import text_of
from core.turn import Turn
from pages.refusals import refuse

# (message, history, model, system prompt, temperature, request) -> the turn, each time it changed
Stream = Callable[[str, list[dict], str, str, float, gr.Request], AsyncIterator[Turn]]
STOPPED = "Stopped: this side's reply is as far as it got when you pressed Stop."
Vote = Callable[[str, dict, dict, str, str], None]  # (message, side A, side B, vote, session)
VOTES = {"A is better": "a", "B is better": "b", "Tie": "tie"}


def last_exchange(history: list[dict]) -> tuple[str, str]:
    """The last user message and the answer after it (titled messages left out)."""
    users = [i for i, m in enumerate(history) if m.get("role") == "user"]
    if not users:
        return "", ""
    answer = "".join(
        text_of(m.get("content"))
        for m in history[users[-1] + 1 :]
        if m.get("role") == "assistant" and not (m.get("metadata") or {}).get("title")
    )
    return text_of(history[users[-1]].get("content")), answer


def compare_page(
    models: Sequence[str], system_prompt: str, stream: Stream, record_vote: Vote, concurrency: int
) -> gr.Blocks:
    """The compare page, an app of its own: one event streams both sides (up to `concurrency` such events at once)."""
    stops: dict[str, dict[str, asyncio.Event]] = {}  # by session: each side's Stop

    async def both(
        message: str,
        history_a: list[dict],
        history_b: list[dict],
        model_a: str,
        system_a: str,
        temperature_a: float,
        model_b: str,
        system_b: str,
        temperature_b: float,
        request: gr.Request,
    ) -> AsyncIterator[tuple[list[dict], list[dict]]]:
        # One event for both sides, each side a task: the browser runs the events of one trigger in turn,
        # so two events would not stream at the same time.
        if not message.strip():
            return
        session = request.session_hash or ""
        stop = stops[session] = {"a": asyncio.Event(), "b": asyncio.Event()}
        asked = {"role": "user", "content": message}
        shown = {"a": [*history_a, asked], "b": [*history_b, asked]}
        changed = asyncio.Event()

        async def side(name: str, history: list[dict], model: str, system: str, temperature: float) -> None:
            latest: list[Turn] = []

            async def read() -> None:
                async for turn in stream(message, history, model, system, temperature, request):
                    latest[:] = [turn]
                    _show(name, history, turn.messages())

            reader = asyncio.ensure_future(read())
            stopped = asyncio.ensure_future(stop[name].wait())
            await asyncio.wait((reader, stopped), return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, stopped):
                task.cancel()
            await asyncio.gather(reader, stopped, return_exceptions=True)
            if reader.cancelled():  # Stop: the reply as far as it got, marked, with its stats
                if latest:
                    latest[0].notice, latest[0].ended = STOPPED, True
                    _show(name, history, latest[0].messages())
                else:
                    _show(name, history, [{"role": "assistant", "content": with_notice("", STOPPED)}])
            elif error := reader.exception():
                raise error

        def _show(name: str, history: list[dict], messages: list[dict]) -> None:
            shown[name] = [*history, asked, *messages]
            changed.set()

        sides = [
            asyncio.create_task(side("a", history_a, model_a, system_a, temperature_a)),
            asyncio.create_task(side("b", history_b, model_b, system_b, temperature_b)),
        ]
        try:
            yield shown["a"], shown["b"]
            while not all(task.done() for task in sides):
                waiting = asyncio.ensure_future(changed.wait())
                await asyncio.wait((waiting, *sides), return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                changed.clear()
                yield shown["a"], shown["b"]
            for task in sides:
                task.result()  # a side's error (e.g. the rate limit) reaches the page
            yield shown["a"], shown["b"]  # what arrived while the last update was on its way
        finally:
            for task in sides:
                task.cancel()
            await asyncio.gather(*sides, return_exceptions=True)
            if stops.get(session) is stop:
                del stops[session]

    def stopper(name: str):
        async def stop_side(request: gr.Request) -> None:
            if event := stops.get(request.session_hash or "", {}).get(name):
                event.set()

        return stop_side

    def vote(
        choice: str,
        a: list[dict],
        b: list[dict],
        model_a: str,
        system_a: str,
        temperature_a: float,
        model_b: str,
        system_b: str,
        temperature_b: float,
        request: gr.Request,
    ) -> None:
        (message_a, reply_a), (message_b, reply_b) = last_exchange(a), last_exchange(b)
        if not (message_a and message_a == message_b and reply_a and reply_b):
            raise refuse("Send a message and let both replies finish, then vote.")
        side_a = {"model": model_a, "system_prompt": system_a, "temperature": temperature_a, "reply": reply_a}
        side_b = {"model": model_b, "system_prompt": system_b, "temperature": temperature_b, "reply": reply_b}
        record_vote(message_a, side_a, side_b, VOTES[choice], request.session_hash or "")
        gr.Info(f"Vote recorded: {choice}.")

    with gr.Blocks(title="Compare", analytics_enabled=False) as page:
        gr.Markdown("<h1 style='text-align: center'>Compare</h1>")
        gr.Markdown("[← Chat](../)")  # the chat is at the page's parent
        gr.Markdown(
            "One message goes to both sides at once. Pick two models, or one model with two settings. "
            "A backend that serves one reply at a time (`--local-slots 1`, or a server with one slot) "
            "answers side B once side A is done."
        )
        sides = []
        with gr.Row():
            for index, name in enumerate("AB"):
                with gr.Column():
                    model = gr.Dropdown(list(models), value=models[min(index, len(models) - 1)], label=f"Model {name}")
                    system = gr.Textbox(system_prompt, label=f"System prompt {name}", lines=2)
                    temperature = gr.Slider(0, 2, value=0.7, step=0.05, label=f"Temperature {name}")
                    # The side's name above its chat, not on it: a floating label covers a scrolled reply.
                    gr.Markdown(f"**Side {name}**")
                    chatbot = gr.Chatbot(show_label=False, height=420, elem_id=f"compare-{name.lower()}")
                    stop = gr.Button(f"Stop {name}", size="sm", variant="secondary")
                sides.append((model, system, temperature, chatbot, stop))
        message = gr.Textbox(placeholder="One message, to both sides…", show_label=False, submit_btn=True)
        with gr.Row():
            buttons = [gr.Button(label, size="sm") for label in VOTES]
        chatbots = [chatbot for _, _, _, chatbot, _ in sides]
        settings = [part for model, system, temperature, _, _ in sides for part in (model, system, temperature)]
        message.submit(
            both, [message, *chatbots, *settings], chatbots, api_name="compare", concurrency_limit=concurrency
        )
        message.submit(lambda: "", None, message, queue=False, api_visibility="private")
        for (_, _, _, _, stop), name in zip(sides, "ab", strict=True):
            stop.click(stopper(name), None, None, queue=False, api_name=f"stop_{name}")
        for button, name in zip(buttons, VOTES.values(), strict=True):
            button.click(vote, [button, *chatbots, *settings], None, api_name=f"vote_{name}")
    return page
