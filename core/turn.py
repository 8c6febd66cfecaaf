"""One turn of the chat: the model streams, calls tools, reads their results, and streams again."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, Protocol

from core.errors import refusal, with_notice
from core.events import Event, GenerationParams
from core.history import Message
from core.redaction import NO_SECRETS, Redactor
from core.relay import Pacer, coalesce
from core.reply import CONTINUE, STATS, Reply, estimate_tokens, new_record, stats
from core.reply import messages as reply_messages
from core.tracing import TurnTrace

RUN, SKIP = "Run", "Skip"  # an approval's options; through the API, a message with this text
DECLINED = "The user declined to run this tool call."
Status = Literal["waiting", "running", "done", "failed", "skipped"]


@dataclass
class ToolResult:
    """What a call gave back: text for the model and the reader; is_error when it failed."""

    text: str
    is_error: bool = False
    seconds: float = 0.0


class Model(Protocol):
    """What a turn needs of a backend (providers.base.ChatBackend is one)."""

    accepts_tools: bool

    def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]: ...


class Toolbox(Protocol):
    """What a turn needs of the tools on offer (tools.hub.ToolHub is one)."""

    def openai_tools(self) -> tuple[dict, ...]: ...

    def needs_approval(self, name: str) -> bool: ...

    def redact(self, text: str) -> str: ...

    async def call(self, name: str, arguments: str) -> ToolResult: ...


@dataclass
class ToolCall:
    """One tool call as the user sees it: name, arguments, then its result and duration."""

    id: str
    name: str
    arguments: str
    approve: bool = False  # waits for Run or Skip
    status: Status = "running"
    result: str = ""
    seconds: float | None = None
    record: str = field(default_factory=lambda: new_record())  # unguessable

    def message(self) -> dict:
        label = {"waiting": "waiting for your approval", "failed": "failed", "skipped": "skipped"}
        metadata: dict = {
            "title": f"Tool: {self.name}",
            "id": self.record,
            "status": "pending" if self.status == "running" else "done",  # waiting: no spinner, it may wait for good
        }
        if self.status in label:
            metadata["log"] = label[self.status]
        if self.seconds is not None:
            metadata["duration"] = round(self.seconds, 2)
        content = f"Arguments:\n{fenced(pretty(self.arguments), 'json')}"
        if self.result:
            content += f"\n\nResult:\n{fenced(self.result)}"
        return {"role": "assistant", "content": content, "metadata": metadata}

    def openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Exchange:
    """A finished call, kept here so later turns can send it back; a client can refer to it, not write it."""

    step: str  # calls made in one step share it
    call: dict  # OpenAI's tool_calls entry
    result: str


class Exchanges:
    """The exchanges this server produced, by record id; the oldest go first past `limit`."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._kept: OrderedDict[str, Exchange] = OrderedDict()

    def add(self, record: str, exchange: Exchange) -> None:
        self._kept[record] = exchange
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)

    def get(self, record: object) -> Exchange | None:
        return self._kept.get(record) if isinstance(record, str) else None

    def kept(self, records: Iterable[object]) -> dict[str, dict]:
        """Those of `records` kept here, in JSON's types, to keep beside their conversation."""
        return {record: asdict(found) for record in records if (found := self.get(record)) is not None}


@dataclass
class Step:
    reply: Reply
    calls: list[ToolCall] = field(default_factory=list)
    id: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass
class Turn:
    """Everything the assistant does for one user message: one step, or several with tool calls."""

    steps: list[Step] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    notice: str = ""  # about the whole turn: the step limit
    error: str = ""  # why it failed, if it did
    refused: str = ""  # why the message was not sent at all (then there are no steps)
    ended: bool = False
    redactor: Redactor = field(default=NO_SECRETS, repr=False)  # the app's secrets, kept out of what is shown

    @property
    def last(self) -> Reply:
        if not self.steps:  # failed before the first step began
            self.steps.append(Step(Reply()))
        return self.steps[-1].reply

    @property
    def text(self) -> str:
        return "".join(step.reply.text for step in self.steps)

    @property
    def waiting(self) -> bool:
        """Calls wait for the user's Run or Skip."""
        return bool(self.steps) and any(call.status == "waiting" for call in self.steps[-1].calls)

    def refuse(self, notice: str) -> Turn:
        """End the turn before it began: the message is not sent, then or with a later one."""
        self.refused, self.error, self.ended = notice, notice, True
        return self

    def fail(self, notice: str, *, continuable: bool = False) -> None:
        """End the turn with a notice; what was shown stays. Calls that did not finish say so."""
        self.last.notice, self.last.continuable, self.error = notice, continuable, notice
        for step in self.steps:
            for call in step.calls:
                if call.status == "running":
                    call.status, call.result = "failed", "It did not finish."

    def messages(self) -> list[dict]:
        """The turn as Gradio chat messages, secrets redacted (a tail that may be one held back while it streams)."""
        if self.refused:
            return refusal(self.refused)
        return self.redactor.messages(self._messages(), streaming=not self.ended)

    def _messages(self) -> list[dict]:
        """Each step's thinking, text and tool calls, then the stats."""
        if len(self.steps) == 1 and not self.steps[0].calls and not self.notice:
            return reply_messages(self.last)  # the plain chat: exactly as before tools
        shown: list[dict] = []
        for step in self.steps:
            text_or_thinking = step.reply.text or step.reply.reasoning or step.reply.notice
            if text_or_thinking or not step.calls:
                shown.extend(m for m in reply_messages(step.reply, footer=False) if m.get("content"))
            shown.extend(call.message() for call in step.calls)
        if self.notice:
            shown.append({"role": "assistant", "content": with_notice("", self.notice)})
        if self.ended and any(step.reply.first_token for step in self.steps):
            telemetry = {"title": STATS, "log": self.stats(), "status": "done"}
            shown.append({"role": "assistant", "content": "", "metadata": telemetry})
        options = [call for call in self.steps[-1].calls if call.status == "waiting"]
        if options:
            shown[-1]["options"] = [{"value": RUN, "label": RUN}, {"value": SKIP, "label": SKIP}]
        elif self.last.continuable:
            shown[-1]["options"] = [{"value": CONTINUE, "label": "Continue"}]
        return shown or [{"role": "assistant", "content": ""}]

    def stats(self) -> str:
        if len(self.steps) == 1:
            return stats(self.last)
        replies = [step.reply for step in self.steps]
        combined = Reply(started=self.started)
        combined.text = "".join(r.reasoning + r.text for r in replies)
        combined.first_token = next((r.first_token for r in replies if r.first_token), None)
        combined.last_token = combined.first_token
        if all(r.usage for r in replies):
            combined.usage = replace(
                replies[0].usage,  # type: ignore[arg-type]
                prompt_tokens=sum(r.usage.prompt_tokens for r in replies),  # type: ignore[union-attr]
                completion_tokens=sum(r.usage.completion_tokens for r in replies),  # type: ignore[union-attr]
            )
        combined.finish_reason = self.last.finish_reason
        tool_seconds = sum(call.seconds or 0 for step in self.steps for call in step.calls)
        # Tokens per second over the time the model spent writing, tool time left out.
        writing = sum((r.last_token or 0) - (r.first_token or 0) for r in replies)
        completion = combined.usage.completion_tokens if combined.usage else estimate_tokens(combined.text)
        rate = [f"{(completion - 1) / writing:.1f} tokens/s"] if completion > 1 and writing > 0 else []
        parts = stats(combined).split(" · ")
        head = [part for part in parts if "first token" in part]
        tail = [part for part in parts if "first token" not in part and "tokens/s" not in part]
        return " · ".join([*head, f"{len(self.steps)} steps", f"tools {tool_seconds:.2f} s", *rate, *tail])


@dataclass
class Paused:
    """A step whose calls wait for the user's Run or Skip."""

    messages: list[Message]
    params: GenerationParams
    step: Step
    steps_left: int

    def as_dict(self) -> dict:
        """In JSON's types, to keep beside the conversation (a restart then loses no approval)."""
        calls = [asdict(call) for call in self.step.calls]
        return {"messages": self.messages, "params": asdict(self.params), "step": self.step.id, "calls": calls,
                "steps_left": self.steps_left}  # fmt: skip

    @classmethod
    def from_dict(cls, kept: dict) -> Paused:
        params = GenerationParams(**{**kept["params"], "tools": tuple(kept["params"]["tools"])})
        step = Step(Reply(), [ToolCall(**call) for call in kept["calls"]], kept["step"])
        return cls(kept["messages"], params, step, kept["steps_left"])


async def run_turn(
    turn: Turn,
    backend: Model,
    messages: list[Message],
    params: GenerationParams,
    *,
    hub: Toolbox | None,
    exchanges: Exchanges,
    pacer: Pacer,
    deadline: float,
    max_steps: int,
    traced: TurnTrace,
    paused: Paused | None = None,
    decision: str | None = None,
    approved: Mapping[str, bool] | None = None,
) -> AsyncIterator[Paused | None]:
    """Stream the turn into `turn`, yielding None whenever the screen should update.

    When calls wait for approval it yields the Paused state and ends; run again with it and the user's
    decision to go on: RUN or SKIP for every waiting call (the chat page), or `approved`, each call's
    answer by its record (the API; a call it does not name is skipped).
    """
    tools = hub.openai_tools() if hub and backend.accepts_tools else ()
    steps_left = max_steps
    if paused is not None:
        messages, params, steps_left = paused.messages, paused.params, paused.steps_left
        # The chat page: new record ids, so the waiting calls stay on screen as they were and only these
        # carry results. The API's client asked by record, and takes the results under the same ones.
        calls = [
            replace(call, status="running", record=call.record if approved is not None else new_record())
            for call in paused.step.calls
        ]
        step = Step(Reply(), calls, paused.step.id)
        turn.steps.append(step)
        for call in step.calls:
            runs = approved.get(call.record, False) if approved is not None else decision == RUN
            if call.approve and not runs:
                call.status, call.result = "skipped", DECLINED
        async for _ in _run_calls(step, hub, exchanges, messages, traced):
            yield None
    else:
        params = replace(params, tools=tools)
    while True:
        if steps_left == 0:
            turn.notice = f"Stopped after {max_steps} steps of tool calls (the limit is --max-steps {max_steps})."
            return
        steps_left -= 1
        # After tool calls, the screen shows their results while the next request is on its way.
        after_tools = len(turn.steps) > 0 and bool(turn.steps[-1].calls)
        step = Step(Reply())
        turn.steps.append(step)
        with traced.model_step(messages, params, step.reply):
            stream = backend.stream(messages, params)
            async for _ in coalesce(stream, step.reply, pacer, deadline, announce=after_tools):
                yield None
        step.reply.raise_for_finish()
        if not step.reply.tool_calls:
            return
        step.calls = [
            ToolCall(
                draft.id or f"call_{secrets.token_hex(6)}",
                draft.name,
                hub.redact(draft.arguments) if hub else draft.arguments,  # shown, and sent to the tool
                approve=bool(hub and hub.needs_approval(draft.name)),
                record=draft.record,  # the id it streamed under
            )
            for _, draft in sorted(step.reply.tool_calls.items())
        ]
        messages = [
            *messages,
            {"role": "assistant", "content": step.reply.text, "tool_calls": [call.openai() for call in step.calls]},
        ]
        if any(call.approve for call in step.calls):
            for call in step.calls:
                call.status = "waiting"
            yield Paused(messages, params, step, steps_left)
            return
        async for _ in _run_calls(step, hub, exchanges, messages, traced):
            yield None


async def _run_calls(
    step: Step, hub: Toolbox | None, exchanges: Exchanges, messages: list[Message], traced: TurnTrace
) -> AsyncIterator[None]:
    """Run the step's calls at once, yielding when they start and as each ends but the last (the next
    step shows that one, as its request goes out); their results are appended to `messages`."""

    async def run_one(call: ToolCall) -> None:
        if call.status == "skipped":
            return
        call.status = "running"
        with traced.tool_call(call):
            result = await hub.call(call.name, call.arguments) if hub else ToolResult("No tools are available.", True)
            call.result, call.seconds = result.text, result.seconds
            call.status = "failed" if result.is_error else "done"

    tasks = [asyncio.create_task(run_one(call)) for call in step.calls]
    try:
        yield None  # the calls are shown running while their requests go out
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                yield None
    finally:  # Stop: cancel what still runs (each an MCP cancellation)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        task.result()
    for call in step.calls:
        exchanges.add(call.record, Exchange(step.id, call.openai(), call.result))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": call.result})


def pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except (json.JSONDecodeError, ValueError):
        return arguments


def fenced(text: str, language: str = "") -> str:
    """A Markdown code block that the text cannot close early."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}"
