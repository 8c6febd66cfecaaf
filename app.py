"""A streaming chat app: Gradio's ChatInterface in front of any OpenAI-compatible
provider, or an embedded local model when none is configured.

    python app.py                        # the embedded SmolLM2 model: no key, no network
    OPENAI_API_KEY=sk-... python app.py  # OpenAI
    python app.py --check                # can this configuration chat? (exit code 0 or 1)
    python app.py --help                 # every flag and environment variable
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse

import preflight
from chat.runs import Run, Runs
from chat.service import CONTROLS, LISTED, Caller, ChatService, Refused
from config import VERSION, ConfigError, Declared, Settings, load_settings
from core import tracing
from core.turn import Turn
from pages import mcp_endpoint
from pages.api_chat import PATH as API_CHAT
from pages.api_chat import api_chat_routes
from pages.built_once import build_configs_once
from pages.compare import compare_page
from pages.csp import ContentSecurityPolicy, policy
from pages.exports import private_folder
from pages.mounted import Page, end_heartbeats, mounted
from pages.owners import OwnerCookie, hf_account, owner
from pages.proxies import client_address
from pages.refusals import refuse
from pages.review import review_page
from pages.signin import SignIns
from providers.registry import create_backend
from storage.logs import LogStore, database_url, export_jsonl, export_votes, votes_path, where
from tools.hub import ToolHub
from tools.python_tools import python_server

EXAMPLES = ["Why is the sky blue?", "Write a haiku about the sea.", "Explain recursion to a child."]
WORKBENCH_PAGES = ("/review", "/compare")
STOP_GRACE_SECONDS = 1  # as the app stops: how long the connections still open get to end on their own
WORKBENCH_OFF = (
    "This page is off: start the app with <code>--log-db chats.db</code> (or a <code>postgresql://</code> URL) "
    "to record conversations, then review them here and compare models side by side."
)


CONTROL_NAMES = [control.name for control in CONTROLS]


def chat_control(control: Declared, settings: Settings) -> gr.Textbox | gr.Slider:
    """A chat's control for a declared setting, starting at its configured value, within its range."""
    value = getattr(settings, control.name)
    if control.kind is str:
        return gr.Textbox(value, label=control.flag.label, lines=3)
    upper = getattr(settings, control.flag.upper) if control.flag.upper else control.maximum
    return gr.Slider(control.minimum, upper, value=value, step=control.flag.step, label=control.flag.label)


def by_name(handler: Callable, names: Sequence[str]) -> Callable:
    """`handler`, which takes its inputs by name, as Gradio calls a function: by position, one parameter
    per name (so the API's parameters have these names and callers can pass settings by keyword), then
    gr.Request if the handler takes `request`."""
    wants_request = "request" in inspect.signature(handler).parameters

    def named(values: tuple) -> dict:
        return dict(zip([*names, "request"] if wants_request else names, values, strict=True))

    if inspect.isasyncgenfunction(handler):

        async def run_stream(*values):
            async for update in handler(**named(values)):
                yield update

        run = run_stream
    else:

        def run_once(*values):
            return handler(**named(values))

        run = run_once
    parameter = inspect.Parameter
    listed = [parameter(name, parameter.POSITIONAL_OR_KEYWORD) for name in names]
    if wants_request:
        listed.append(parameter("request", parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))
        run.__annotations__ = {"request": gr.Request}  # Gradio finds gr.Request by its type hint
    run.__signature__ = inspect.Signature(listed)
    run.__doc__ = handler.__doc__
    return run


def chat_synced_steps(demo: gr.Blocks, chat_ui: gr.ChatInterface) -> list[gr.events.Dependency]:
    """The last step of each of ChatInterface's events (send, retry, edit, undo, an example, clear): each
    ends by copying the chatbot into its state. ChatInterface keeps its events to itself, so they are
    found by what that step writes; something to chain after them."""
    synced = [chat_ui.chatbot_state._id, chat_ui.chatbot_value._id]
    return [
        gr.events.Dependency(None, {}, step._id, None)
        for step in demo.fns.values()
        if [block._id for block in step.outputs] == synced
    ]


def chat_reply_steps(demo: gr.Blocks) -> list[dict]:
    """ChatInterface's steps that stream a reply to the page (send, retry, edit, an example), as `cancels=`
    takes them: another conversation opened in the tab ends the page's watching (not the reply)."""
    return [step.get_config() for step in demo.fns.values() if getattr(step.fn, "__name__", "") == "_submit_fn"]


def textbox_for(running: bool) -> gr.MultimodalTextbox:
    """The chat's textbox as ChatInterface leaves it: Stop in place of Send while a reply runs."""
    if running:
        return gr.MultimodalTextbox(interactive=False, submit_btn=False, stop_btn=True)
    return gr.MultimodalTextbox(interactive=True, submit_btn=True, stop_btn=False)


def model_choices(settings: Settings, listed: Sequence[str]) -> list[str]:
    """The models a user may pick: --models (those the provider lists, if it lists any), or all it lists."""
    allowed = [m for m in settings.models if not listed or m in listed] if settings.models else list(listed)
    return [settings.model, *(m for m in allowed if m != settings.model)]


def tools_line(backend_accepts_tools: bool, hub: ToolHub | None) -> str:
    """What the page says about tools: which ones this chat can use, if any."""
    if hub is None:
        return ""
    if not backend_accepts_tools:
        return "This model runs without tools: its chat template takes none."
    listed = ", ".join(f"`{tool.name}`" for tool in hub.tools)
    return f"Tools this chat can use: {listed}." if listed else "No tools: no MCP server could be started."


def build_app(
    settings: Settings, models: Sequence[str] = (), hub: ToolHub | None = None, store: LogStore | None = None
) -> gr.Blocks:
    """The app; `models` are those the provider listed (preflight), offered in the model picker;
    `hub` holds the MCP servers' tools, `store` the conversations (--store), and the workbench's log and pages
    with --log-db (both started; the caller closes them)."""
    backend = create_backend(settings)
    choices = model_choices(settings, models)
    service = ChatService(settings, backend, choices, hub, store)
    workbench = store is not None and settings.log_db is not None

    # The handlers: each turns Gradio's inputs into the service's, and a Refused into one sentence.
    def caller(request: gr.Request) -> Caller:
        peer = request.client.host if request.client else None
        address = client_address(peer, request.headers.get("x-forwarded-for", ""), settings.forwarded_allow_ips)
        hf_user = hf_account(getattr(request.request, "scope", {}))  # Gradio's sign-in session, when on
        who = owner(request.headers.get("cookie", ""), request.username, hf_user)
        if who is None:  # gradio_client, say: its session is all there is of it
            return Caller(request.session_hash or "", address)
        return Caller(f"page:{who}", address, returns=True, owner=f"page:{who}")

    def validate(message: dict) -> dict:
        """Checked in the browser before a message is sent; the API goes through chat()."""
        problem = service.problem(message)
        return gr.validate(problem is None, problem or "")

    async def chat(
        message: dict, history: list[dict], model: str, request: gr.Request, **chosen: Any
    ) -> AsyncIterator[list[dict]]:
        """Stream the assistant's reply to `message`, given the conversation and the chat's settings by name."""
        asking, tab = caller(request), request.session_hash or ""
        conversation = service.conversation_for(asking, tab, history)
        history = service.whole(asking, tab, history)  # a long conversation's earlier messages, not shown
        try:
            run = service.start(message, history, model, chosen, asking, notify=gr.Info, conversation=conversation)
        except Refused as exc:
            raise refuse(str(exc)) from None  # the conversation stays as it was
        async for turn in service.follow(run, asking):  # a reload or a dropped connection ends this, not the reply
            yield turn.messages()

    async def show(found: tuple[list[dict], Run | None], asking: Caller, tab: str) -> AsyncIterator[tuple]:
        """A conversation (chatbot, textbox): as kept, or with its reply as it grows if it runs."""
        shown, run = found
        if run is None:  # kept in the store: it ended, or it streams in another replica
            yield shown, gr.skip()
            async for now_shown in service.elsewhere(asking, tab, shown):
                yield now_shown, gr.skip()
            return
        running = run.running
        streaming = textbox_for(running=True) if running else gr.skip()
        async for _ in service.follow(run, asking):
            yield service.in_view(asking, tab, run.messages()), streaming
        if running:
            yield service.in_view(asking, tab, run.messages()), textbox_for(running=False)

    async def resume(request: gr.Request) -> AsyncIterator[tuple]:
        """On page load: the conversation the visitor had open, and its reply as it grows if it runs."""
        asking = caller(request)
        found = await service.reopen(asking, request.session_hash or "")
        if found is None:
            yield gr.skip(), gr.skip()
            return
        async for shown in show(found, asking, request.session_hash or ""):
            yield shown

    async def open_conversation(conversation: str, request: gr.Request) -> tuple[list[dict], gr.MultimodalTextbox]:
        """A conversation picked in the sidebar, in place of the one shown (which goes on if it runs). Quick,
        out of the queue; a reply running there is followed by the next step, follow_opened()."""
        try:
            shown, run = await service.open(caller(request), request.session_hash or "", conversation)
        except Refused as exc:
            raise refuse(str(exc)) from None
        return shown, textbox_for(running=run is not None and run.running)

    async def follow_opened(request: gr.Request) -> AsyncIterator[tuple]:
        """The reply running in the conversation the tab just opened, as it grows."""
        asking, tab = caller(request), request.session_hash or ""
        run = service.showing(asking, tab)
        if run is None:  # kept in the store: it ended, or it streams in another replica
            async for shown in service.elsewhere(asking, tab):
                yield shown, gr.skip()
        if run is None or not run.running:  # (or it ended since it was opened)
            yield gr.skip(), textbox_for(running=False)
            return
        async for shown in show((service.in_view(asking, tab, run.messages()), run), asking, tab):
            yield shown

    async def list_conversations(count: int, request: gr.Request) -> tuple[gr.Radio, gr.Button]:
        """The sidebar's list (the newest `count`), and Show more if there are older ones."""
        try:
            listing = await service.listed(caller(request), request.session_hash or "", count)
        except Refused as exc:
            raise refuse(str(exc)) from None
        shown = listing.shown if listing.shown in {id for _, id in listing.conversations} else None
        return gr.Radio(listing.conversations, value=shown), gr.Button(visible=listing.more)

    def new_conversation(request: gr.Request) -> tuple:
        service.clear(caller(request), request.session_hash or "")
        return [], gr.Radio(value=None), textbox_for(running=False)

    async def delete_conversation(conversation: str | None, count: int, request: gr.Request) -> tuple:
        """The conversation picked in the sidebar is deleted from the store; the page starts a new chat."""
        if not conversation:
            raise refuse("Pick a conversation in the list to delete it.")
        service.delete(caller(request), request.session_hash or "", conversation)
        return [], *await list_conversations(count, request), textbox_for(running=False)

    def shown_now(shown: list[dict], request: gr.Request) -> tuple[list[dict], gr.Button]:
        """After the chat changed outside ChatInterface's events: the history it sends next (in the shape
        ChatInterface keeps it, as its own events do), and Show earlier messages while the tab shows a long
        conversation's newest turns only."""
        return shown, gr.Button(visible=service.left_out(caller(request), request.session_hash or ""))

    def show_earlier(history: list[dict], request: gr.Request) -> list[dict]:
        return service.show_earlier(caller(request), request.session_hash or "", history)

    def stop(request: gr.Request) -> None:
        """The Stop button: the reply ends (a reload would only leave it)."""
        if run := service.showing(caller(request), request.session_hash or ""):
            run.stop()

    def forget(request: gr.Request) -> tuple[list[dict], gr.Button, gr.MultimodalTextbox]:
        """The chat was cleared: a reload shows a new one (a reply it showed goes on in its conversation; an
        update of it still on the way as the page stopped watching is cleared too)."""
        service.clear(caller(request), request.session_hash or "")
        return [], gr.Button(visible=False), textbox_for(running=False)  # (Show earlier messages)

    async def compare_stream(
        message: str, history: list[dict], model: str, system_prompt: str, temperature: float, request: gr.Request
    ) -> AsyncIterator[Turn]:
        chosen = {"system_prompt": system_prompt, "temperature": temperature}
        try:
            async for turn in service.compare_side(message, history, model, chosen, caller(request)):
                yield turn
        except Refused as exc:
            raise refuse(str(exc)) from None

    def record_vote(message: str, a: dict, b: dict, vote: str, session: str) -> None:
        service.vote(Caller(session, ""), message, a, b, vote)

    def rate(history: list[dict], like: gr.LikeData, request: gr.Request) -> gr.Column:
        """Thumbs up or down on a reply: logged with its turn; then a comment may follow."""
        rated = service.rate(caller(request), request.session_hash or "", history, like.index, like.liked)
        return gr.Column(visible=rated)

    def add_comment(comment: str, request: gr.Request) -> tuple:
        if service.comment(caller(request), comment):
            gr.Info("Thanks: your comment is saved with your rating.")
        return "", gr.Column(visible=False)

    def export_chat(history: list[dict], model: str, request: gr.Request, **chosen: Any) -> list[str]:
        whole = service.whole(caller(request), request.session_hash or "", history)
        markdown, document = service.export(whole, model, chosen)
        folder, name = private_folder("chat-export-"), f"chat-{datetime.now():%Y%m%d-%H%M%S}"
        (folder / f"{name}.md").write_text(markdown, encoding="utf-8")
        (folder / f"{name}.json").write_text(document, encoding="utf-8")
        return [str(folder / f"{name}.md"), str(folder / f"{name}.json")]

    def import_chat(path: str) -> tuple:
        try:
            imported = service.load(Path(path).read_bytes())
        except Refused as exc:
            raise refuse(str(exc)) from None  # the chat on screen stays as it was
        if imported.notice:
            gr.Warning(imported.notice)
        chosen = [imported.chosen[name] for name in CONTROL_NAMES]
        return imported.history, imported.history, *chosen, imported.model

    # Uploads older than a day are deleted (hourly), and all of them when the app stops.
    with gr.Blocks(title="Chat", fill_height=True, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown("<h1 style='text-align: center'>Chat</h1>")
        model_picker = gr.Dropdown(
            choices,
            value=settings.model,
            label="Model",
            info=("Runs in this process." if backend.in_process else f"Served by {settings.base_url}.")
            + (" Switch at any time; the conversation carries over." if len(choices) > 1 else ""),
            interactive=len(choices) > 1,
            # The API (or typing) may name any model: chat() refuses one not offered in a sentence,
            # where the dropdown's own check would fail with a traceback in the console.
            allow_custom_value=True,
        )
        if hub is not None:
            gr.Markdown(tools_line(backend.accepts_tools, hub))
        if workbench:
            gr.Markdown(
                "Conversations on this demo are recorded, with your ratings, for the team that runs it. "
                "Workbench: [Review](review/) · [Compare](compare/)"
            )
        # Built here, placed below the comment box (render() further down), so that a rating's comment box
        # opens right under the chat rather than under Model settings. ChatInterface renders no accordion
        # of its own for inputs that are rendered already.
        settings_panel = gr.Accordion("Model settings", open=False, render=False)
        with settings_panel:
            settings_inputs = [chat_control(control, settings) for control in CONTROLS]
        attach = "an image or a text file" if backend.accepts_images else "a text file"
        chat_ui = gr.ChatInterface(
            by_name(chat, ["message", "history", *CONTROL_NAMES, "model"]),
            multimodal=True,
            textbox=gr.MultimodalTextbox(
                placeholder=f"Type a message, or attach {attach}…",
                file_count="multiple",
                submit_btn=True,
                stop_btn=True,  # our own textbox: ChatInterface's stop_btn default does not apply to it
                autofocus=True,
                show_label=False,
                render=False,
            ),
            api_name="chat",
            additional_inputs=[*settings_inputs, model_picker],
            examples=[[{"text": example, "files": []}] for example in EXAMPLES],
            cache_examples=False,  # caching would call the provider at startup (eagerly, on Spaces)
            editable=True,
            validator=validate,
            # A backend that serves one reply at a time (the local model) makes others wait, seeing their place.
            concurrency_limit=backend.max_concurrency or settings.concurrency,
            analytics_enabled=False,
        )
        earlier = gr.Button("Show earlier messages", size="sm", visible=False, elem_id="show-earlier")
        unqueued: dict = {"queue": False, "api_visibility": "private"}  # a quick step: one request, no queue
        synced = {"fn": shown_now, "inputs": chat_ui.chatbot, "outputs": [chat_ui.chatbot_state, earlier], **unqueued}
        # A reply runs apart from the page: a reload shows it, and Stop (not a reload) ends it.
        # Following a reply costs nothing upstream, so any number of pages follow at once (Gradio's default
        # runs one such event at a time: a second visitor's reload waited for the first one's reply to end).
        resumed = demo.load(
            resume, None, [chat_ui.chatbot, chat_ui.textbox], concurrency_limit=None, api_visibility="private"
        )
        resumed.then(**synced)
        chat_ui.textbox.stop(stop, None, None, **unqueued)
        earlier.click(show_earlier, chat_ui.chatbot, chat_ui.chatbot, **unqueued).then(**synced)
        # Another conversation in the tab (a clear is a new chat): first the page stops watching the reply it
        # showed (which goes on), so that none of its updates still on the way writes over the one shown next.
        # Each step after leaves the textbox as the conversation shown next needs it (a reply followed and left
        # took Send away, and only its own end gives it back).
        leave = {"fn": None, "cancels": chat_reply_steps(demo), "queue": False}
        chat_ui.chatbot.clear(**leave).then(forget, None, [chat_ui.chatbot, earlier, chat_ui.textbox], **unqueued).then(
            **synced
        )
        followed = [resumed]  # the replies the page follows on its own: after a reload, or opened while they ran
        leaving: list = [chat_ui.chatbot.clear]  # and the ways of leaving one: the chat's clear, the sidebar's
        if service.keeps_conversations:
            with gr.Sidebar(label="Conversations", open=False):
                if settings.hf_sign_in:  # signed in, their conversations follow them to any browser
                    gr.LoginButton(size="sm")
                new_chat = gr.Button("New chat", size="sm", variant="primary")
                conversations = gr.Radio([], label="Your conversations, newest first", elem_id="conversations")
                show_more = gr.Button("Show more", size="sm", visible=False, elem_id="show-more")
                listing = gr.State(LISTED)  # how many the list shows: more with each Show more
                delete = gr.Button("Delete this conversation", size="sm", variant="stop", elem_id="delete-conversation")
            private: dict = {"api_visibility": "private", "concurrency_limit": None}  # none waits for another's
            # Listed as the page loads and as each of the chat's events (a reply, a retry, an undo, a clear) ends.
            relist = {"fn": list_conversations, "inputs": listing, "outputs": [conversations, show_more], **private}
            demo.load(**relist)
            for synced_step in chat_synced_steps(demo, chat_ui):
                synced_step.then(**relist)
            show_more.click(lambda count: count + LISTED, listing, listing, **unqueued).then(**relist)
            opened = conversations.input(**leave).then(
                open_conversation, conversations, [chat_ui.chatbot, chat_ui.textbox], **unqueued
            )
            following = opened.then(**synced).then(follow_opened, None, [chat_ui.chatbot, chat_ui.textbox], **private)
            following.then(**synced)
            followed.append(following)
            new_chat.click(**leave).then(
                new_conversation, None, [chat_ui.chatbot, conversations, chat_ui.textbox], **private
            ).then(**synced)
            delete.click(**leave).then(
                delete_conversation,
                [conversations, listing],
                [chat_ui.chatbot, conversations, show_more, chat_ui.textbox],
                **unqueued,
            ).then(**synced)
            leaving += [conversations.input, new_chat.click, delete.click]
        gr.on(leaving, None, cancels=followed, queue=False)  # a reply followed stops being followed when left
        if workbench:
            with gr.Column(visible=False) as comment_box:
                comment = gr.Textbox(label="Tell us more about this reply (optional)", max_lines=3, max_length=2000)
                send_comment = gr.Button("Send comment", size="sm")
            chat_ui.chatbot.like(rate, chat_ui.chatbot, comment_box, api_name="rate")
            gr.on(
                [comment.submit, send_comment.click], add_comment, comment, [comment, comment_box], api_name="comment"
            )
        settings_panel.render()
        with gr.Row():
            export_button = gr.Button("Export chat (Markdown + JSON)", size="sm")
            import_button = gr.UploadButton("Import chat (JSON)", file_types=[".json"], size="sm")
        exported = gr.File(label="Exported chat", file_count="multiple", visible=False, interactive=False)
        export_button.click(
            by_name(export_chat, ["history", *CONTROL_NAMES, "model"]),
            [chat_ui.chatbot_state, *settings_inputs, model_picker],
            exported,
            api_name="export_chat",
        ).success(lambda: gr.File(visible=True), None, exported, **unqueued)
        import_button.upload(
            import_chat,
            import_button,
            [chat_ui.chatbot, chat_ui.chatbot_state, *settings_inputs, model_picker],
            api_name="import_chat",
        )
    # Routes serve() adds: /api/chat for the AI SDK's useChat; and the workbench pages, apps of their own.
    demo.replies = service.runs  # serve()'s stop() interrupts them
    demo.extra_routes = api_chat_routes(service, settings.forwarded_allow_ips, settings.cors_origins, settings.auth)
    demo.workbench = {}
    if workbench:
        signins = SignIns(settings.review_auth, shared=store)
        review, review_routes = review_page(store, signins, settings.forwarded_allow_ips)
        limit = backend.max_concurrency or settings.concurrency
        demo.workbench = {
            "/review": Page(review, review_routes),
            "/compare": Page(compare_page(choices, settings.system_prompt, compare_stream, record_vote, limit)),
        }
    if settings.mcp_server:  # serve() mounts it at /mcp/
        demo.mcp_lifespan = mcp_endpoint.lifespan(
            mcp_endpoint.chat_server(service.answer, VERSION), settings.host, settings.auth
        )
    # A bounded queue: past this many waiting requests, newcomers are told the app is busy. Those waiting
    # see their place once a second: Gradio's default re-sends every place each time a reply starts,
    # which for a burst of n arrivals is n² messages. The same for the workbench pages' own queues.
    for page in (demo, *(page.blocks for page in demo.workbench.values())):
        page.queue(max_size=settings.queue_size, status_update_rate=1)
    return demo


@dataclass
class Serving:
    """The app as serve() left it serving."""

    url: str
    stop: Callable[[], None]  # from the main thread (Ctrl-C, SIGTERM, the end of a test): see serve()


def serve(demo: gr.Blocks, settings: Settings, **options) -> Serving:
    """demo.launch(**options), returning at once, with room for --concurrency replies streaming at once, the
    Content-Security-Policy on every response, the workbench pages mounted beside the chat (or a sentence at
    their addresses when they are off), and the MCP endpoint if --mcp-server. Its stop() ends the replies still
    running (each kept as interrupted, with its text so far, and its tabs given that last update), then the
    server: the app exits 1.4 s after a Ctrl-C with a reply streaming, where Gradio's own Ctrl-C took 6.2 s."""
    options["prevent_thread_lock"] = True
    max_file_size = f"{settings.max_upload_mb}mb"  # Gradio refuses a larger upload as it arrives
    max_threads = max(40, settings.concurrency + 16)  # see launch() below
    pages: dict[str, Page] = getattr(demo, "workbench", {})
    mcp_lifespan = getattr(demo, "mcp_lifespan", None)  # --mcp-server
    replies: Runs | None = getattr(demo, "replies", None)
    loop: list[asyncio.AbstractEventLoop] = []  # the server's, once it runs

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        """As the server starts (Gradio's app exists, its event loop runs): the routes and pages beside the chat."""
        loop.append(asyncio.get_running_loop())
        for path, endpoint, methods in getattr(demo, "extra_routes", ()):
            app.add_api_route(path, endpoint, methods=methods, include_in_schema=False)
        if not pages:  # a sentence at the pages' addresses, not a bare Not Found
            for path in WORKBENCH_PAGES:
                title = path.strip("/").title()
                page = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{WORKBENCH_OFF}</p>"
                app.add_api_route(path, lambda page=page: HTMLResponse(page, 404), include_in_schema=False)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(mounted(app, pages, max_file_size, max_threads))
            if mcp_lifespan is not None:
                await stack.enter_async_context(mcp_lifespan(app))
            yield

    async def ending() -> None:
        """What must end before the server can: the replies, then the pages' tabs' heartbeat streams (the
        chat's end with demo.close())."""
        if replies is not None:
            await replies.interrupt(timeout=STOP_GRACE_SECONDS)
        end_heartbeats(pages)

    def stop() -> None:
        if loop and loop[0].is_running():
            with contextlib.suppress(TimeoutError):
                asyncio.run_coroutine_threadsafe(ending(), loop[0]).result(timeout=STOP_GRACE_SECONDS + 1)
        demo.close(verbose=False)

    app_kwargs: dict = {
        "middleware": [
            Middleware(ContentSecurityPolicy, value=policy(settings.frame_ancestors)),
            Middleware(OwnerCookie, api=(API_CHAT,)),
        ],
        "lifespan": lifespan,
    }
    # Gradio's queue runs at most max_threads events at once (its table of running jobs has that many
    # slots), whatever the concurrency limit says. A stream holds no thread: it borrows one only to
    # pre/postprocess each update. Room for every stream, plus the page's other events.
    _, url, _ = demo.launch(max_threads=max_threads, max_file_size=max_file_size, app_kwargs=app_kwargs, **options)
    # A connection still open as the server stops (an MCP client's stream, a tab's queue stream, which Gradio
    # keeps open once its queue has stopped) is cut after this long rather than waited for: demo.close() waits
    # only 5 s for the server, and then the interpreter would exit under its loop, still running.
    demo.server.config.timeout_graceful_shutdown = STOP_GRACE_SECONDS
    for blocks in (demo, *(page.blocks for page in pages.values())):
        build_configs_once(blocks)  # not for every new visitor
    return Serving(url, stop)


def tool_hub(settings: Settings) -> ToolHub | None:
    """The tools' servers (those of --mcp, and one in this process for --tools), not started yet; None without tools."""
    servers = (*settings.mcp_servers, *((python_server(settings.python_tools),) if settings.python_tools else ()))
    if not servers:
        return None
    return ToolHub(
        servers,
        timeout=settings.tool_timeout,
        secrets=settings.secrets,
        approve_all=settings.approve_tools,
    )


def export_log(store: LogStore, path: Path) -> None:
    """--export-log: every logged turn as JSONL, oldest first."""
    try:
        if store.problem:
            sys.exit(f"Error: cannot read the conversation log {where(store.url)}: {store.problem}.")
        count = export_jsonl(store, store.find(limit=None), path)
        votes = export_votes(store, votes_path(path))
    finally:
        store.close()
    print(f"Exported {count} turns from {where(store.url)} to {path}.", flush=True)
    if votes:
        print(f"Exported {votes} compare vote{'' if votes == 1 else 's'} to {votes_path(path)}.", flush=True)


def open_store(settings: Settings) -> LogStore | None:
    """The conversation store (--store, or --log-db's database), opened; None when it is off."""
    if settings.store is None:
        return None
    if "://" not in settings.store:  # the default place is made on first use (a given file's folder exists)
        folder = Path(settings.store).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"Conversations are not kept: cannot make {folder} ({exc.strerror}). Pass --store PATH.", flush=True)
            return None
    url = database_url(settings.store)
    replica = settings.replica or f"{socket.gethostname()}:{settings.port}"
    store = LogStore(url, settings.log_retention_days, replica).open()
    if not settings.check and not settings.export_log:
        place = where(url) if "://" in settings.store else f"{url.database} (SQLite)"
        print(f"Conversations are kept in {place}.", flush=True)
    return store


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(argv)
    except ConfigError as exc:
        sys.exit(f"Error: {exc}")
    # SIGTERM ends the app as Ctrl-C does, through the finally below, so the MCP servers stop with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    store = open_store(settings)
    if store is not None and settings.export_log:
        export_log(store, settings.export_log)
        return
    hub = tool_hub(settings)
    try:
        if hub is not None:  # started inside the try: a SIGTERM while they start still stops them
            hub.start()
        report = preflight.run(settings, stream=settings.check, hub=hub, store=store)
        if settings.check:
            print(report.render(), flush=True)
            sys.exit(0 if report.ok else 1)
        demo = build_app(settings, report.models, hub, store)
        print(settings.describe(), flush=True)
        if traced := tracing.configure():  # the standard OTEL_* variables: off unless they name an endpoint
            print(traced, flush=True)
        if report.findings:
            print(report.render(), flush=True)
        # Gradio's uvicorn rewrites the peer address from X-Forwarded-For too, trusting 127.0.0.1 unless told
        # otherwise: give it our list, so that it and proxies.client_address agree on who the client is.
        os.environ["FORWARDED_ALLOW_IPS"] = ",".join(map(str, settings.forwarded_allow_ips))
        try:
            serving = serve(
                demo, settings, server_name=settings.host, server_port=settings.port, auth=list(settings.auth) or None
            )
        except OSError as exc:
            if "Cannot find empty port" not in str(exc):
                raise
            # Only a port asked for (--port) can be taken: without it, Gradio tries the next ones.
            raise ConfigError(
                f"Port {settings.port} is already in use: stop what listens there, or pass --port N."
            ) from None
        try:  # from here on, a Ctrl-C or SIGTERM stops the server (not demo.block_thread(): see serve())
            if settings.mcp_server:
                endpoint = f"{serving.url}{mcp_endpoint.PATH.lstrip('/')}/"
                print(f"MCP endpoint (streamable HTTP) for other agents: {endpoint}", flush=True)
            # What start-up made (some 400,000 objects: Gradio, the SDKs, the pages) lives as long as the app: out
            # of the collector's sight, a full collection under load takes a few ms rather than 200 ms.
            gc.collect()
            gc.freeze()
            while demo.is_running:  # until Ctrl-C, or SIGTERM (which exits through the finally below)
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            serving.stop()
    except ConfigError as exc:
        sys.exit(f"Error: {exc}")
    finally:
        if hub is not None:
            hub.close()
        if store is not None:
            store.close()  # what is queued gets written


if __name__ == "__main__":
    main()
