"""One reply as it streams: its answer, its thinking, its telemetry, and how it looks in the chat."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from core.errors import IncompleteReply, ReplyCutOff, with_notice
from core.events import Event, Finish, Notice, Reasoning, ToolCallDelta, Usage

THINKING = "Thinking"
STATS = "Stats"
CONTINUE = "Continue from where you stopped."
_OPEN, _CLOSE = "<think>", "</think>"


class ThinkTags:
    """Splits `<think>...</think>` at the start of a reply off as reasoning.

    Models such as DeepSeek-R1 and Qwen3 write their reasoning inline between these
    tags. Only a tag before any answer text counts, so an answer that talks about
    the tag is left alone. A tag may arrive split across chunks.
    """

    def __init__(self) -> None:
        self.state = "start"  # "start": only whitespace so far; "thinking"; "after" (the tag closed); "answer"
        self.pending = ""

    def feed(self, text: str) -> list[Event]:
        text = self.pending + text
        self.pending = ""
        out: list[Event] = []
        while text:
            if self.state == "after":  # the blank lines between the thinking and the answer
                text = text.lstrip()
                self.state = "answer" if text else "after"
                continue
            if self.state == "answer":
                out.append(text)
                break
            if self.state == "start":
                stripped = text.lstrip()
                if stripped.startswith(_OPEN):
                    self.state, text = "thinking", stripped[len(_OPEN) :]
                elif _OPEN.startswith(stripped):  # whitespace or part of the tag: wait for more
                    self.pending = text
                    break
                else:
                    self.state = "answer"
                continue
            index = text.find(_CLOSE)  # thinking
            if index >= 0:
                out.append(Reasoning(text[:index]))
                self.state, text = "after", text[index + len(_CLOSE) :]
                continue
            keep = next((n for n in range(len(_CLOSE) - 1, 0, -1) if text.endswith(_CLOSE[:n])), 0)
            out.append(Reasoning(text[: len(text) - keep]))
            self.pending = text[len(text) - keep :]
            break
        return [event for event in out if (event.text if isinstance(event, Reasoning) else event)]

    def flush(self) -> list[Event]:
        rest, self.pending = self.pending, ""
        if not rest:
            return []
        return [Reasoning(rest)] if self.state == "thinking" else [rest]


def new_record() -> str:
    return f"tool-{secrets.token_urlsafe(16)}"


@dataclass
class CallDraft:
    """A tool call as it streams in: its arguments arrive in pieces."""

    id: str = ""
    name: str = ""
    arguments: str = ""
    record: str = field(default_factory=lambda: new_record())  # unguessable: the call's id on screen and in the log


@dataclass
class Reply:
    """A reply being received. Times are time.monotonic() seconds."""

    started: float = field(default_factory=time.monotonic)
    text: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str = ""  # the model that answered, when the provider says
    first_token: float | None = None  # the first text or reasoning
    answer_began: float | None = None  # the first answer text, which ends the thinking
    last_token: float | None = None
    ended: float | None = None
    notice: str = ""  # what went wrong, for the reader
    continuable: bool = False  # cut at max tokens: offer to continue
    tool_calls: dict[int, CallDraft] = field(default_factory=dict)  # by the index the provider gives
    tags: ThinkTags = field(default_factory=ThinkTags, repr=False)

    def add(self, event: Event) -> None:
        events = self.tags.feed(event) if isinstance(event, str) else [event]
        for item in events:
            self._apply(item)

    def finish(self) -> None:
        for item in self.tags.flush():
            self._apply(item)
        self.ended = time.monotonic()

    def _apply(self, event: Event) -> None:
        now = time.monotonic()
        match event:
            case str():
                self.text += event
                self.answer_began = self.answer_began or now
            case Reasoning():
                self.reasoning += event.text
            case Usage():
                self.usage = event
                return
            case Finish():
                self.finish_reason = event.reason
                self.model = event.model or self.model
                return
            case ToolCallDelta():
                draft = self.tool_calls.setdefault(event.index, CallDraft())
                draft.id = draft.id or event.id
                draft.name = draft.name or event.name  # some servers repeat it in every piece
                draft.arguments += event.arguments
            case Notice():
                self.notice = self.notice or event.text
                return
        self.first_token = self.first_token or now
        self.last_token = now

    def raise_for_finish(self) -> None:
        """Turn how the stream ended into the error a user should see, if any."""
        # SDKs raise nothing when a stream just stops; only a finish reason says it is whole.
        if self.finish_reason is None:
            raise IncompleteReply
        if self.finish_reason == "length":
            raise ReplyCutOff

    @property
    def thinking(self) -> bool:
        return bool(self.reasoning) and self.answer_began is None and self.ended is None


def estimate_tokens(text: str) -> int:
    """About four characters a token, for providers that report no usage."""
    return max(1, round(len(text) / 4)) if text else 0


def stats(reply: Reply) -> str:
    """One discreet line: time to first token, tokens/s, token counts, finish reason."""
    parts = []
    if reply.first_token is not None:
        parts.append(f"{reply.first_token - reply.started:.2f} s to first token")
    if reply.usage:
        prompt, completion, mark = reply.usage.prompt_tokens, reply.usage.completion_tokens, ""
    else:
        prompt, completion, mark = None, estimate_tokens(reply.reasoning + reply.text), "≈"
    span = (reply.last_token or 0) - (reply.first_token or 0)
    if completion > 1 and span > 0:
        # The first token marks the start of the span, so it is not counted in the rate.
        parts.append(f"{mark}{(completion - 1) / span:.1f} tokens/s")
    counts = f"{mark}{completion} completion tokens"
    parts.append(counts if prompt is None else f"{prompt} prompt + {counts}")
    if mark:
        parts[-1] += " (estimated: the provider sent no usage)"
    parts.append(f"finish: {reply.finish_reason or 'none'}")
    return " · ".join(parts)


def messages(reply: Reply, *, footer: bool = True) -> list[dict]:
    """The reply as Gradio chat messages: thinking (folded), the answer, then (with the
    footer) its stats and a Continue button if it was cut off.

    Titled messages are for the reader: core/history.py never sends them back to the model.
    """
    shown: list[dict] = []
    if reply.reasoning:
        thought: dict = {"title": THINKING, "status": "pending" if reply.thinking else "done"}
        if not reply.thinking:
            thought["duration"] = round((reply.answer_began or reply.ended or time.monotonic()) - reply.started, 1)
        shown.append({"role": "assistant", "content": reply.reasoning, "metadata": thought})
    answer = with_notice(reply.text, reply.notice) if reply.notice else reply.text
    if answer or not shown:
        shown.append({"role": "assistant", "content": answer})
    if not footer:
        return shown
    if reply.ended is not None and reply.first_token is not None:
        telemetry = {"title": STATS, "log": stats(reply), "status": "done"}
        shown.append({"role": "assistant", "content": "", "metadata": telemetry})
    if reply.continuable:  # Gradio shows the options of a reply's last message, as buttons under it
        shown[-1]["options"] = [{"value": CONTINUE, "label": "Continue"}]
    return shown
