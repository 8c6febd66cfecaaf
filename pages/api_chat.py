"""POST /api/chat: the AI SDK's `useChat` (its DefaultChatTransport, or TextStreamChatTransport) over the chat service.

The request is what the transport sends: the chat's `id`, its `messages` as UI messages with `parts`, the
`trigger`, and any field the page adds to the body (`model`, and each chat setting by its name). The reply
is the UI message stream protocol (server-sent events of JSON chunks, then [DONE]), or plain text with
?protocol=text.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from chat.runs import Run
from chat.service import CONTROLS, LISTED, NOT_YOURS, Caller, ChatService, Refused, message_id
from config import Network
from core.history import text_of
from core.reply import STATS, THINKING
from core.turn import RUN, SKIP, Exchange, ToolCall, Turn
from pages.basic_auth import NEEDS_LOGIN, basic_user
from pages.mounted import Route
from pages.owners import hf_account, owner
from pages.proxies import client_address

PATH = "/api/chat"
MAX_BODY_BYTES = 4 * 1024 * 1024  # a conversation as JSON; the service's limits then apply to its text
MAX_LISTED = 1000  # chats GET /api/chats lists at most (?limit=N; LISTED without it)
# The headers of the AI SDK's own UI message stream response (UI_MESSAGE_STREAM_HEADERS), and no buffering
# in a proxy on the way.
STREAM_HEADERS = {
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}
NO_CACHE = {"cache-control": "no-cache"}
ABORTED = {"type": "abort", "reason": "stopped"}
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool-calls", "content_filter": "content-filter"}


@dataclass(frozen=True)
class ChatRequest:
    """What a useChat request asks for, in the service's terms."""

    chat_id: str
    history: list[dict]  # the conversation before the new message, as the chat page's messages
    message: str
    model: str
    chosen: dict[str, Any]  # the chat settings the body names
    approved: dict[str, bool] | None = None  # answers to tool approvals, by the call's id
    continues: str | None = None  # the assistant message those answers are in, which the reply continues


def read_request(body: Any, default_model: str) -> ChatRequest:
    """The request body as the service's inputs; Refused says, in one sentence, what is wrong with it.

    Only what a person wrote and what the assistant answered travels back: a `system` message is refused
    (the system prompt is a setting), reasoning is dropped, and a tool part becomes a reference to a call
    by its id, which the service honours only for a call it made itself."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise Refused("Send a JSON object with the conversation in `messages`, as useChat does.")
    history: list[dict] = []
    for message in body["messages"]:
        history.extend(_as_history(message))
    last = body["messages"][-1]
    approved = _approvals(last) if last.get("role") == "assistant" else None
    if last.get("role") != "user" and not approved:
        raise Refused("The last message must be the user's, or the assistant's with answers to its tool approvals.")
    if approved:
        while history and history[-1]["role"] == "assistant":  # the message being continued
            history.pop()
    else:
        history.pop()  # the new message, given apart
    model = body.get("model", default_model)
    if not isinstance(model, str):
        raise Refused("`model` must be a string: one of the models this app offers.")
    chosen = {}
    for control in CONTROLS:
        if control.name in body:
            chosen[control.name] = _setting(control.name, control.kind, body[control.name])
    if approved:
        text, continues = RUN if any(approved.values()) else SKIP, str(last.get("id") or "")
        return ChatRequest(str(body.get("id") or ""), history, text, model, chosen, approved, continues)
    return ChatRequest(str(body.get("id") or ""), history, _text_of(last), model, chosen)


def _approvals(message: dict) -> dict[str, bool]:
    """The user's answers in an assistant message's tool parts (state approval-responded), by call id."""
    answers = {}
    for part in message.get("parts") or []:
        if isinstance(part, dict) and part.get("state") == "approval-responded":
            approval = part.get("approval")
            if isinstance(approval, dict) and isinstance(part.get("toolCallId"), str):
                answers[part["toolCallId"]] = approval.get("approved") is True
    return answers


def _as_history(message: Any) -> list[dict]:
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        raise Refused("Each message needs a `role` and its `parts`, as useChat sends them.")
    role = message.get("role")
    if role == "user":
        return [{"role": "user", "content": _text_of(message)}]
    if role != "assistant":
        raise Refused(f"A message's role must be user or assistant, not {role!r}: the system prompt is a setting.")
    shown = []
    for part in message["parts"]:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            shown.append({"role": "assistant", "content": part["text"]})
        elif isinstance(kind, str) and (kind == "dynamic-tool" or kind.startswith("tool-")):
            # A reference the service looks up among the calls it made; the client's input and output are not read.
            name = part.get("toolName") or kind.removeprefix("tool-")
            shown.append(
                {
                    "role": "assistant",
                    "content": "",
                    "metadata": {"title": f"Tool: {name}", "id": part.get("toolCallId")},
                }
            )
    return shown


def _text_of(message: dict) -> str:
    parts = message["parts"]
    if any(isinstance(part, dict) and part.get("type") == "file" for part in parts):
        raise Refused("Attachments are not taken at /api/chat: send text, or attach files in the chat page.")
    return "".join(part["text"] for part in parts if isinstance(part, dict) and isinstance(part.get("text"), str))


def _setting(name: str, kind: type, value: Any) -> Any:
    numeric = kind in (int, float)
    if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise Refused(f"`{name}` must be a number.")
    if not numeric and not isinstance(value, kind):
        raise Refused(f"`{name}` must be a {kind.__name__}.")
    return value


@dataclass
class UIMessageStream:
    """A turn, as it grows, written as the UI message stream's chunks: what is new since the last call.

    Text and thinking are taken redacted, holding back a tail that could begin a secret, so what was sent
    never changes. Tool calls go by their unguessable record id, which is how a later request refers
    to them."""

    message_id: str
    sent_steps: int = 0
    text: dict[int, str] = field(default_factory=dict)  # by step: what was sent
    reasoning: dict[int, str] = field(default_factory=dict)
    open_parts: dict[str, str] = field(default_factory=dict)  # part id -> "text" | "reasoning"
    calls: dict[str, str] = field(default_factory=dict)  # record -> the last state sent
    arguments: dict[str, str] = field(default_factory=dict)  # record -> the input text sent

    def start(self) -> list[dict]:
        return [{"type": "start", "messageId": self.message_id}]

    def update(self, turn: Turn) -> list[dict]:
        chunks: list[dict] = []
        final = turn.ended or turn.waiting
        for index, step in enumerate(turn.steps):
            if index >= self.sent_steps:
                if index > 0:
                    chunks += self._close_all()
                    chunks.append({"type": "finish-step"})
                chunks.append({"type": "start-step"})
                self.sent_steps = index + 1
            growing = not final and index == len(turn.steps) - 1
            chunks += self._grow("reasoning", index, turn.redactor.text(step.reply.reasoning, streaming=growing))
            text = turn.redactor.text(step.reply.text, streaming=growing)
            if text and f"reasoning-{index}" in self.open_parts:
                chunks += self._close(f"reasoning-{index}")
            chunks += self._grow("text", index, text)
            for draft in step.reply.tool_calls.values():
                if draft.name and draft.record not in self.calls:
                    chunks += self._close_all()
                    chunks.append(_input_start(draft.record, draft.name))
                    self.calls[draft.record] = "input"
                if self.calls.get(draft.record) == "input":
                    shown = turn.redactor.text(draft.arguments, streaming=True)
                    if len(shown) > len(self.arguments.get(draft.record, "")):
                        delta = shown[len(self.arguments.get(draft.record, "")) :]
                        chunks.append({"type": "tool-input-delta", "toolCallId": draft.record, "inputTextDelta": delta})
                        self.arguments[draft.record] = shown
            for call in step.calls:
                chunks += self._call(call)
        return chunks

    def finish(self, turn: Turn) -> list[dict]:
        chunks = self._close_all()
        if self.sent_steps:
            chunks.append({"type": "finish-step"})
        last = turn.steps[-1].reply.finish_reason if turn.steps else None
        if failed(turn):
            chunks.append({"type": "error", "errorText": turn.error})
        reason = "error" if failed(turn) else FINISH_REASONS.get(last or "", "other")
        chunks.append({"type": "finish", "finishReason": reason, "messageMetadata": metadata(turn)})
        return chunks

    def abort(self) -> list[dict]:
        """The end of a reply that was stopped: what was sent stays."""
        return [*self._close_all(), *([{"type": "finish-step"}] if self.sent_steps else []), ABORTED]

    def _grow(self, kind: str, index: int, shown: str) -> list[dict]:
        kept = self.text if kind == "text" else self.reasoning
        sent = kept.get(index, "")
        if len(shown) <= len(sent):
            return []
        part = f"{kind}-{index}"
        chunks = []
        if part not in self.open_parts and not sent:
            chunks.append({"type": f"{kind}-start", "id": part})
            self.open_parts[part] = kind
        elif part not in self.open_parts:  # a call came between: the text goes on in a new part
            part = f"{kind}-{index}-{len(sent)}"
            chunks.append({"type": f"{kind}-start", "id": part})
            self.open_parts[part] = kind
        kept[index] = shown
        chunks.append({"type": f"{kind}-delta", "id": part, "delta": shown[len(sent) :]})
        return chunks

    def _close(self, part: str) -> list[dict]:
        kind = self.open_parts.pop(part)
        return [{"type": f"{kind}-end", "id": part}]

    def _close_all(self) -> list[dict]:
        return [chunk for part in list(self.open_parts) for chunk in self._close(part)]

    def _call(self, call: ToolCall) -> list[dict]:
        chunks = []
        state = self.calls.get(call.record)
        if state is None:  # not streamed as a draft
            chunks.append(_input_start(call.record, call.name))
            state = "input"
        if state == "input":
            chunks.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": call.record,
                    "toolName": call.name,
                    "input": _parsed(call.arguments),
                    "dynamic": True,
                }
            )
            state = "available"
        if state == "available" and call.status == "waiting":
            chunks.append(
                {"type": "tool-approval-request", "approvalId": f"approval-{call.record}", "toolCallId": call.record}
            )
            state = "asked"
        if state in ("available", "asked") and call.status in ("done", "failed", "skipped"):
            if call.status == "done":
                chunks.append({"type": "tool-output-available", "toolCallId": call.record, "output": call.result})
            elif call.status == "skipped":
                chunks.append({"type": "tool-output-denied", "toolCallId": call.record})
            else:
                chunks.append({"type": "tool-output-error", "toolCallId": call.record, "errorText": call.result})
            state = "output"
        self.calls[call.record] = state
        return chunks


# A tool step as the page shows it (core.turn.ToolCall.message()) -> the state of its UI message part.
TOOL_STATES = {"waiting for your approval": "approval-requested", "failed": "output-error", "skipped": "output-denied"}


def ui_messages(chat_id: str, messages: list[dict], exchanges: Mapping[str, Exchange]) -> list[dict]:
    """A kept conversation (the page's messages) as the UI messages useChat shows and sends back: each user
    message, and each run of assistant messages as one message with its text, reasoning and tool parts (a
    tool part goes back as a reference to the call, by its record id; its input and output are the call's,
    from `exchanges`, else the step as the page shows it) and its stats as metadata."""
    shown: list[dict] = []
    for index, message in enumerate(messages):
        if message.get("role") == "user":
            shown.append({"id": f"{chat_id}-{index}", "role": "user", "parts": [_text(text_of(message["content"]))]})
            continue
        if not shown or shown[-1]["role"] != "assistant":
            shown.append({"id": f"{chat_id}-{index}", "role": "assistant", "parts": []})
        parts, about = shown[-1]["parts"], message.get("metadata") or {}
        title, record, content = about.get("title") or "", message_id(message), text_of(message["content"])
        if title == STATS:
            shown[-1]["metadata"] = {"stats": about.get("log", "")}
        elif title == THINKING:
            parts.append({"type": "reasoning", "text": content, "state": "done"})
        elif title.startswith("Tool: ") and record:
            state, exchange = TOOL_STATES.get(about.get("log", ""), "output-available"), exchanges.get(record)
            part = {"type": "dynamic-tool", "toolName": title.removeprefix("Tool: "), "toolCallId": record}
            part |= {"state": state, "input": _parsed(exchange.call["function"]["arguments"]) if exchange else None}
            if state == "approval-requested":
                part["approval"] = {"id": f"approval-{record}"}
            elif state == "output-error":
                part["errorText"] = exchange.result if exchange else content
            elif state == "output-available":
                part["output"] = exchange.result if exchange else content
            parts.append(part)
        elif content:
            parts.append(_text(content))
    return shown


def _text(text: str) -> dict:
    return {"type": "text", "text": text, "state": "done"}


def failed(turn: Turn) -> bool:
    """Whether the reply failed; one cut at max tokens did not: its finish reason says "length"."""
    return bool(turn.error) and not (turn.steps and turn.steps[-1].reply.continuable)


def _input_start(record: str, name: str) -> dict:
    # dynamic: the client does not know this app's tools; it shows them as dynamic-tool parts.
    return {"type": "tool-input-start", "toolCallId": record, "toolName": name, "dynamic": True}


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def metadata(turn: Turn) -> dict:
    """The stats line's figures: tokens as the provider counted them, and the reply's timing."""
    replies = [step.reply for step in turn.steps]
    first = next((reply.first_token for reply in replies if reply.first_token), None)
    usage = [reply.usage for reply in replies if reply.usage]
    return {
        "stats": turn.stats() if first else "",
        "usage": {
            "promptTokens": sum(u.prompt_tokens for u in usage),
            "completionTokens": sum(u.completion_tokens for u in usage),
        }
        if usage
        else None,
        "firstTokenSeconds": round(first - turn.started, 3) if first else None,
        "seconds": round(time.monotonic() - turn.started, 3),
    }


def sse(chunk: dict | str) -> str:
    return f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)}\n\n"


async def ui_stream(run: Run, turns: AsyncIterator[Turn], approved: Iterable[str] = ()) -> AsyncIterator[str]:
    """The reply as the UI message stream, from its start (a follower that comes back gets it all again: the
    transport replays it); `approved` are calls the client has, waiting for approval: only their results go."""
    writer = UIMessageStream(run.reply_id)
    writer.calls.update(dict.fromkeys(approved, "asked"))
    for chunk in writer.start():
        yield sse(chunk)
    turn = None
    async for turn in turns:
        for chunk in writer.update(turn):
            yield sse(chunk)
    if turn is not None:
        for chunk in writer.abort() if run.stopped else writer.finish(turn):
            yield sse(chunk)
    yield sse("[DONE]")


async def text_stream(turns: AsyncIterator[Turn]) -> AsyncIterator[str]:
    """The answer's text alone, as it grows (TextStreamChatTransport); a failure ends it with its sentence."""
    sent = ""
    turn = None
    async for turn in turns:
        shown = turn.redactor.text(turn.text, streaming=not turn.ended)
        if len(shown) > len(sent):
            yield shown[len(sent) :]
            sent = shown
    if turn is not None and failed(turn):
        yield f"{sent and chr(10) * 2}⚠️ {turn.error}"


def api_chat_routes(
    service: ChatService, proxies: Sequence[Network], cors_origins: Sequence[str], logins: Sequence[tuple[str, str]]
) -> list[Route]:
    """The /api/chat routes, for serve() to add."""

    def refused(sentence: str, status: int = 400) -> Response:
        return PlainTextResponse(sentence, status)  # the transport shows the body as the error's message

    def session_of(whose: str | None) -> str:
        return f"api:{whose or 'anyone'}:"

    def who(request: Request) -> Caller | Response:
        """The caller, with the session their chats' ids go under (the login's, else the owner cookie's, else
        anyone's: then the chat id alone is the way to it); or the refusal: no login, an origin not allowed."""
        user = basic_user(request.headers.get("authorization", ""), logins) if logins else ""
        if user is None:
            return PlainTextResponse(NEEDS_LOGIN, 401, headers={"www-authenticate": 'Basic realm="chat"'})
        origin = request.headers.get("origin")
        if origin and urlparse(origin).netloc != request.headers.get("host") and origin not in cors_origins:
            return refused(f"Calls from {origin} are off: start the app with --cors-origins {origin}.", 403)
        peer = request.client.host if request.client else None
        address = client_address(peer, request.headers.get("x-forwarded-for", ""), proxies)
        whose = owner(request.headers.get("cookie", ""), user, hf_account(request.scope))
        # Kept for an owner (a login, the owner cookie); anyone else's chat is theirs by its id alone, until it ends.
        return Caller(session_of(whose), address, returns=True, owner=f"api:{whose}" if whose else None)

    def of_chat(caller: Caller, chat_id: str) -> Caller:
        return replace(caller, session=caller.session + chat_id)  # its reply, approvals and ratings

    def chat_caller(request: Request) -> Caller | Response:
        """For the routes under a chat's id: its caller, or the refusal."""
        caller = who(request)
        return caller if isinstance(caller, Response) else of_chat(caller, request.path_params["chat_id"])

    def running(request: Request, caller: Caller) -> tuple[Caller, Run | None]:
        """The chat's latest reply and whose it is: the caller's, else one started under the chat's id by anyone
        (a client whose reply began before it had the owner cookie, which its first GET here then gave it)."""
        run = service.latest(caller, service.named(caller))
        if run is None and caller.owner is not None:
            anyone = replace(caller, session=session_of(None) + request.path_params["chat_id"], owner=None)
            if (started := service.latest(anyone, service.named(anyone))) is not None:
                return anyone, started
        return caller, run

    async def post(request: Request) -> Response:
        caller = who(request)
        if isinstance(caller, Response):
            return caller
        if "application/json" not in request.headers.get("content-type", ""):  # and so a browser asks first
            return refused("Send the request as JSON (Content-Type: application/json), as useChat does.", 415)
        raw = await _body(request)
        if raw is None:
            return refused(f"The request is over {MAX_BODY_BYTES // 2**20} MB.", 413)
        try:
            asked = read_request(json.loads(raw), service.settings.model)
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
            return refused("The request body is not JSON, or is nested too deeply.")
        except Refused as exc:
            return refused(str(exc))
        message = {"text": asked.message, "files": []}
        caller = of_chat(caller, asked.chat_id)
        conversation = service.named(caller)
        if asked.approved and not service.waits(caller, conversation):
            return refused("No tool call of this chat waits for an answer: send a new message.", 409)
        try:
            run = service.start(
                message, asked.history, asked.model, asked.chosen, caller, approved=asked.approved,
                reply_id=asked.continues, conversation=conversation, chat_id=asked.chat_id,
            )  # fmt: skip
        except Refused as exc:
            return refused(str(exc))
        turns = service.follow(run, caller)  # an abort or a reload ends this request, not the reply
        if request.query_params.get("protocol") == "text":
            return StreamingResponse(text_stream(turns), media_type="text/plain; charset=utf-8", headers=NO_CACHE)
        stream = ui_stream(run, turns, asked.approved or ())
        return StreamingResponse(stream, media_type="text/event-stream", headers=STREAM_HEADERS)

    async def resume(request: Request) -> Response:
        """useChat({resume: true}) on load: the chat's reply from its start, if one is streaming; 204 if none."""
        caller = chat_caller(request)
        if isinstance(caller, Response):
            return caller
        caller, run = running(request, caller)
        if run is None or not run.running:
            return Response(status_code=204)
        stream = ui_stream(run, service.follow(run, caller))
        return StreamingResponse(stream, media_type="text/event-stream", headers=STREAM_HEADERS)

    async def stop(request: Request) -> Response:
        """The chat's Stop: its reply ends (an aborted request only leaves it); 204 once it has."""
        caller = chat_caller(request)
        if isinstance(caller, Response):
            return caller
        if run := running(request, caller)[1]:
            await run.stopped_now()
        return Response(status_code=204)

    async def listed(request: Request) -> Response:
        """The caller's kept chats, newest first (none for a caller with no owner, or with the store off)."""
        caller = who(request)
        if isinstance(caller, Response):
            return caller
        limit = request.query_params.get("limit", "")
        count = min(int(limit), MAX_LISTED) if limit.isdigit() and int(limit) > 0 else LISTED
        try:
            chats = await service.chats(caller, count)
        except Refused as exc:
            return refused(str(exc), 503)
        shown = [{**chat, "updated": chat["updated"].isoformat()} for chat in chats]
        return JSONResponse(shown, headers=NO_CACHE)

    async def opened(request: Request) -> Response:
        """A kept chat, to show again: {"id", "messages"} as UI messages (a reply still streaming is resumed
        through its stream instead); 404 when the caller has no such chat."""
        caller = chat_caller(request)
        if isinstance(caller, Response):
            return caller
        try:
            found = await service.chat(caller, service.named(caller))
        except Refused as exc:
            return refused(str(exc), 503)
        if found is None:
            return refused(NOT_YOURS, 404)
        chat_id = request.path_params["chat_id"]
        return JSONResponse({"id": chat_id, "messages": ui_messages(chat_id, *found)}, headers=NO_CACHE)

    async def delete(request: Request) -> Response:
        """Delete a kept chat (its reply stops); 204, whether or not there was one of the caller's."""
        caller = chat_caller(request)
        if isinstance(caller, Response):
            return caller
        service.delete(caller, None, service.named(caller))
        return Response(status_code=204)

    return [
        (PATH, post, ["POST"]),
        (PATH + "s", listed, ["GET"]),
        (PATH + "/{chat_id}", opened, ["GET"]),
        (PATH + "/{chat_id}", delete, ["DELETE"]),
        (PATH + "/{chat_id}/stream", resume, ["GET"]),
        (PATH + "/{chat_id}/stop", stop, ["POST"]),
    ]


async def _body(request: Request) -> bytes | None:
    """The request's body, read no further than MAX_BODY_BYTES (None past it): a client's claimed length is
    checked first, and a body without one is counted as it arrives."""
    claimed = request.headers.get("content-length", "")
    if claimed.isdigit() and int(claimed) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)
