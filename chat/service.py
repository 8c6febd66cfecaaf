"""The chat under every way in (the chat page, Compare, /mcp/): turns, answers, ratings, export and import.

It knows nothing of Gradio: a page's handler passes the conversation, the settings by name and who is
asking, and turns a Refused into what its page shows."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chat.runs import Run, Runs
from chat.transcript import ChatConfig, ImportProblem, from_json, to_json, to_markdown
from config import VERSION, Settings, chat_controls
from core.errors import RETRY, ImagesNotSupported, ReplyCutOff, UnreadableAttachment, describe, with_notice
from core.events import GenerationParams
from core.guards import MessageLimits, RateLimiter, admit, message_problem, trim_history
from core.history import as_history_entry, text_of, to_provider_messages
from core.redaction import Redactor
from core.relay import Pacer
from core.tracing import TurnTrace
from core.turn import RUN, SKIP, Exchange, Exchanges, Paused, Turn, run_turn
from providers.base import ChatBackend
from storage.logs import ConversationRecord, LogStore, Unreadable, now
from storage.recorder import Recorder
from tools.hub import ToolHub

MAX_IMPORT_BYTES = 20 * 1024 * 1024
SAVE_EVERY = 2.0  # seconds between saves of a streaming reply: what a crash can lose of it
TITLE_CHARS = 80  # a conversation's title: the start of its first message
MAX_TABS = 10_000  # page tabs (and owners) whose open conversation is remembered; the oldest go first
INTERRUPTED = f"The app restarted before this reply finished. {RETRY}."
NOT_YOURS = "There is no such conversation of yours: it may have been deleted."
UNREACHABLE = "Your conversations cannot be read now: their database is unreachable. Try again soon."
OPENED = 20  # messages a long conversation opens with (its newest turns): Chromium renders 400 in over a second
EARLIER = "earlier-messages"  # the metadata id of the note that stands for the earlier ones on the page
LISTED = 50  # conversations a sidebar lists at first (the owner's newest), and each "Show more" adds
CONTROLS = chat_controls()  # the settings each chat changes (config.Settings declares them)
NAMED = uuid.UUID("8f0b6c1e-2d3a-4c5b-9e7f-0a1b2c3d4e5f")  # the namespace of chats named by their client


class Refused(Exception):
    """A request the chat does not serve, in one sentence; the conversation stays as it was."""


@dataclass(frozen=True)
class Caller:
    """Who asks: their session (their latest reply, approvals and ratings belong to it), address (rate limits),
    and the owner the store keeps their conversations for."""

    session: str
    address: str
    returns: bool = False  # whether they can come back to a reply (a login, the owner cookie, a chat id) after a drop
    owner: str | None = None  # whose conversations the store keeps (a login, the owner cookie); None: none kept


@dataclass(frozen=True)
class Listing:
    """A sidebar's list: the owner's newest conversations as (title, id), the one a tab shows, and
    whether there are older ones."""

    conversations: list[tuple[str, str]]
    shown: str | None
    more: bool


@dataclass(frozen=True)
class Imported:
    """A conversation read from an export, ready to continue here."""

    history: list[dict]
    chosen: dict[str, Any]  # each chat setting by name, within its range
    model: str
    notice: str | None = None  # what changed on the way in (a model not offered here)


class ChatService:
    """One chat, shared by every page and endpoint of the app; the backend, tools and log are started
    by the caller, who closes them."""

    def __init__(
        self,
        settings: Settings,
        backend: ChatBackend,
        choices: Sequence[str],
        hub: ToolHub | None = None,
        store: LogStore | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.choices = list(choices)
        self.hub = hub
        self.store = store
        self.configured = {control.name: getattr(settings, control.name) for control in CONTROLS}
        self.limits = MessageLimits(settings.max_message_chars, settings.max_files, settings.max_attachment_chars)
        self.redactor = Redactor(settings.secrets)  # replies, tool steps and the log never show a secret
        self.recorder = Recorder(store if settings.log_db else None)  # the workbench's log of turns: --log-db
        self._per_session = RateLimiter(settings.rate_limit_session)
        self._per_address = RateLimiter(settings.rate_limit_ip)
        self._pacer = Pacer(settings.update_interval)  # shared: the more replies stream, the less often each updates
        self._exchanges = Exchanges()  # tool results this server produced, for later turns
        # By owner and conversation (session twice where none is kept): calls waiting for the user's Run or Skip.
        self._paused: dict[tuple[str, str], Paused] = {}
        self.runs = Runs(settings.stop_unwatched)  # replies running apart from the connections watching them
        # A page tab (its owner's, so that a copied session_hash names nothing) -> the conversation it shows.
        self._tabs: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._current: OrderedDict[str, str | None] = OrderedDict()  # an owner -> the one they had open last
        self._earlier: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()  # a tab -> the messages it left out
        # (owner's session, conversation) found streaming in another process: a page watches it there (elsewhere())
        self._elsewhere: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- checks ------------------------------------------------------------------
    def problem(self, message: dict | str) -> str | None:
        """Why this message cannot be sent, if it cannot: the message limits."""
        return message_problem(message, self.limits)

    def not_offered(self, model: str) -> str | None:
        """Why this model cannot be used, if it cannot (the API can name any model)."""
        if model in self.choices:
            return None
        return f"The model {model} is not offered here: choose one of {', '.join(self.choices)}."

    async def too_fast(self, caller: Caller) -> str | None:
        """Why this message must wait, if it must: the per-session and per-address limits (counted in the store
        when it is shared by replicas; in this process when it is not, or cannot be reached)."""
        wait = None
        limited = self.settings.rate_limit_session or self.settings.rate_limit_ip
        if limited and self.store is not None and self.store.shared:
            checks = [
                (f"session:{caller.session}", self.settings.rate_limit_session),
                (f"address:{caller.address}", self.settings.rate_limit_ip),
            ]
            with contextlib.suppress(Unreadable):  # the database is down: this process's own count decides
                wait = await asyncio.to_thread(self.store.admit, checks)
        if wait is None:
            wait = admit((self._per_session, caller.session), (self._per_address, caller.address))
        if wait:
            return f"You are sending messages faster than this demo allows. Wait {math.ceil(wait)} s, then retry."
        return None

    def waits(self, caller: Caller, conversation: str | None = None) -> bool:
        """Whether tool calls of the caller's (in this conversation) wait for an approval."""
        return (caller.session, conversation or caller.session) in self._paused

    def chosen(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Each chat setting by name, within its range; one not given at its configured value."""
        return {c.name: c.clamp(given.get(c.name, self.configured[c.name]), self.settings) for c in CONTROLS}

    # -- replies -----------------------------------------------------------------
    async def _run(
        self, turn: Turn, sent: list, params: GenerationParams, conversation: str | None = None, **resume
    ) -> AsyncIterator[Paused | None]:
        """run_turn() with this chat's backend, tools and limits, traced as one turn (OpenTelemetry, when set)."""
        params = params if params.model else replace(params, model=self.settings.model)  # named in its trace too
        traced = TurnTrace(self.settings.provider, self.settings.base_url, conversation, self.redactor.text)
        steps = run_turn(
            turn,
            self.backend,
            sent,
            params,
            hub=self.hub,
            exchanges=self._exchanges,
            pacer=self._pacer,
            deadline=self.settings.deadline,
            max_steps=self.settings.max_steps,
            traced=traced,
            **resume,
        )
        try:
            async with contextlib.aclosing(steps):
                async for waits in steps:
                    yield waits
        except Exception as exc:
            traced.failed(exc)
            raise
        finally:
            traced.end()

    async def turn(
        self,
        message: dict | str,
        history: list[dict],
        model: str,
        chosen: Mapping[str, Any],
        caller: Caller,
        notify: Callable[[str], None] = lambda _: None,
        approved: Mapping[str, bool] | None = None,
        conversation: str | None = None,
    ) -> AsyncIterator[Turn]:
        """The reply to `message` ({"text": ..., "files": [...]}; an option's button sends a str), given the
        conversation, as it grows: the same Turn, yielded whenever there is more to show (a page shows
        turn.messages()); it has ended, or waits for an approval, at the last. Calls waiting for approval
        are answered by the message RUN or SKIP, or by `approved`: each call's answer by its record.
        `conversation`: the kept conversation it goes on, whose state the store has after a restart.
        Refused: the conversation stays as it was."""
        chosen = self.chosen(chosen)
        if problem := self.problem(message) or self.not_offered(model):
            raise Refused(problem)
        turn = Turn(redactor=self.redactor)
        if too_fast := await self.too_fast(caller):
            yield turn.refuse(too_fast)  # never sent to the provider, then or with a later message
            return
        key = (caller.session, conversation or caller.session)  # where its calls wait for an answer
        text = message.get("text") if isinstance(message, dict) else message
        if conversation is not None:
            await self._recall(caller, conversation, history, answers=approved is not None or text in (RUN, SKIP))
        try:
            sent = to_provider_messages(
                chosen["system_prompt"],
                history,
                message,
                images=self.backend.accepts_images,
                exchanges=self._exchanges,
            )
        except (UnreadableAttachment, ImagesNotSupported) as exc:  # refused: sent neither now nor later
            yield turn.refuse(describe(exc, self.settings, partial=False))
            return
        waiting = self._paused.pop(key, None)
        if waiting and approved is not None:  # the API: each call's answer by its record
            resume: dict[str, Any] = {"paused": waiting, "approved": approved}
        elif waiting and text in (RUN, SKIP):  # the chat page's buttons
            resume = {"paused": waiting, "decision": text}
        else:
            resume = {}
        try:
            try:
                sent, dropped = trim_history(sent, self.settings.max_history_chars)
                if dropped:
                    notify(f"The {dropped} oldest messages were left out to keep the conversation within its limit.")
                params = GenerationParams.of(chosen, model)
                async for waits in self._run(turn, sent, params, conversation, **resume):
                    if waits is not None:
                        self._paused[key] = waits
                    yield turn
                if not (turn.text or turn.waiting):
                    turn.last.notice = f"The model sent an empty reply. {RETRY}."
            except Exception as exc:  # every failure becomes a line in the chat; the text so far stays
                partial = bool(turn.text)
                turn.fail(describe(exc, self.settings, partial=partial), continuable=isinstance(exc, ReplyCutOff))
            turn.ended = not turn.waiting
            yield turn
        finally:  # Stop too: the log gets the turn as it ended
            config = {**self._config(model, chosen).as_dict(), "app_version": VERSION}
            self.recorder.turn(caller.session, history, message, turn, config)

    def start(
        self,
        message: dict | str,
        history: list[dict],
        model: str,
        chosen: Mapping[str, Any],
        caller: Caller,
        notify: Callable[[str], None] = lambda _: None,
        approved: Mapping[str, bool] | None = None,
        reply_id: str | None = None,
        conversation: str | None = None,
        chat_id: str | None = None,
    ) -> Run:
        """turn(), run as its own task, the caller's session's latest reply: a connection that drops ends
        only its follower (run.follow()), and a new one sees the reply from the start. Refused at once."""
        if problem := self.problem(message) or self.not_offered(model):
            raise Refused(problem)
        kept = self.store is not None and conversation is not None and caller.owner is not None
        turns = self.turn(message, history, model, chosen, caller, notify, approved, conversation)
        key = conversation or caller.session
        return self.runs.start(
            key,
            [*history, as_history_entry(message)],
            turns,
            owner=caller.session,
            reply_id=reply_id,
            on_change=self._saver(caller, chat_id) if kept else None,
        )

    def _saver(self, caller: Caller, chat_id: str | None) -> Callable[[Run], None]:
        """Save the run's conversation for its owner: as it streams, every SAVE_EVERY seconds; then as it ended.
        The first save is held for this process's reads (the sidebar's list, a reload) and written with the
        next: a crowd's first writes would come among their first updates (+14% p50 at 32 users, scenario 12)."""
        created, saved = now(), [0.0]

        def save(run: Run) -> None:
            if not run.ended and time.monotonic() - saved[0] < SAVE_EVERY:
                return
            first, saved[0] = not saved[0], time.monotonic()
            title = next((text_of(m["content"]) for m in run.before if m.get("role") == "user"), "")
            messages = run.messages()
            record = ConversationRecord(
                run.key, caller.owner, title[:TITLE_CHARS] or "Untitled", created, now(), run.ended or "streaming",
                messages, self._state(caller, run.key, messages), chat_id,
            )  # fmt: skip
            self.store.save_conversation(record, write=bool(run.ended) or not first)  # type: ignore[union-attr]

        return save

    # A kept conversation's state, beside its messages: what its next turn needs that memory loses in a
    # restart (the results of its tool calls, which later turns send back; the calls waiting for Run or Skip).
    def _state(self, caller: Caller, conversation: str, messages: list[dict]) -> dict:
        paused = self._paused.get((caller.session, conversation))
        return {
            "exchanges": self._exchanges.kept(map(message_id, messages)),
            "paused": paused.as_dict() if paused else None,
        }

    async def _recall(self, caller: Caller, conversation: str, history: list[dict], *, answers: bool) -> None:
        """After a restart, from the store: the conversation's tool results that its history refers to,
        and, for an answer (Run or Skip), its calls waiting for one. Another owner's conversation gives none."""
        records = {record for record in map(message_id, history) if record is not None}
        missing = {record for record in records if self._exchanges.get(record) is None}
        answered = answers and (caller.session, conversation) not in self._paused
        if not (missing or answered) or self.store is None or caller.owner is None:
            return
        try:
            stored = await self._stored(self.store.opened, caller.owner, conversation)
        except Refused:  # the turn goes on without them (the store's log has the line)
            return
        state = (stored or {}).get("state") or {}
        for record, exchange in (state.get("exchanges") or {}).items():
            if record in missing:
                self._exchanges.add(record, Exchange(**exchange))
        if answered and state.get("paused"):
            self._paused[caller.session, conversation] = Paused.from_dict(state["paused"])

    def conversation_for(self, caller: Caller, tab: str, history: list[dict]) -> str | None:
        """The conversation a message from this page tab goes on: the one it shows, or a new one (None: the
        caller has no owner to keep it for)."""
        if not caller.returns:
            return None
        conversation = (self._tabs.get((caller.session, tab)) if history else None) or str(uuid.uuid4())
        self._showing(caller, tab, conversation)
        return conversation

    def _showing(self, caller: Caller, tab: str, conversation: str | None) -> None:
        if self._tabs.get((caller.session, tab)) != conversation:
            self._earlier.pop((caller.session, tab), None)
        for seen, key, value in (
            (self._tabs, (caller.session, tab), conversation),
            (self._current, caller.session, conversation),
        ):
            seen[key] = value
            seen.move_to_end(key)
            while len(seen) > MAX_TABS:
                seen.popitem(last=False)

    @property
    def keeps_conversations(self) -> bool:
        """Whether conversations are kept (the store is on), so that their owners can list and open them."""
        return self.store is not None

    async def listed(self, caller: Caller, tab: str, count: int = LISTED) -> Listing:
        """The owner's newest `count` conversations, and which this tab shows."""
        if caller.owner is None or self.store is None:
            return Listing([], None, False)
        rows = await self._stored(self.store.owned, caller.owner, count + 1)
        key, newest = (caller.session, tab), rows[0]["id"] if rows else None
        shown = self._tabs[key] if key in self._tabs else self._current.get(caller.session, newest)
        return Listing([(row["title"], row["id"]) for row in rows[:count]], shown, len(rows) > count)

    async def open(self, caller: Caller, tab: str, conversation: str) -> tuple[list[dict], Run | None]:
        """One of the caller's conversations, shown in this tab from now on, with its reply if it runs here.
        Refused: it is not theirs, or no longer there."""
        found = await self._found(caller, conversation) if caller.returns else None
        if found is None:
            raise Refused(NOT_YOURS)
        self._showing(caller, tab, conversation)
        return self._opened(caller, tab, *found)

    def delete(self, caller: Caller, tab: str | None, conversation: str) -> None:
        """Delete one of the caller's conversations (its reply stops); a tab showing it starts a new chat."""
        if not caller.returns:
            return
        self.runs.drop(conversation, caller.session)
        self._paused.pop((caller.session, conversation), None)
        if self.store is not None and caller.owner is not None:
            self.store.delete_conversation(caller.owner, conversation)
        if self._tabs.get((caller.session, tab)) == conversation:
            self._showing(caller, tab, None)
        elif self._current.get(caller.session) == conversation:  # a reload opens none
            self._current[caller.session] = None

    async def reopen(self, caller: Caller, tab: str) -> tuple[list[dict], Run | None] | None:
        """What a page tab shows as it loads: the conversation its owner had open last (after a restart, their
        newest one in the store), with its reply if it runs here; None for a new chat."""
        if not caller.returns:
            return None
        if caller.session in self._current:
            conversation = self._current[caller.session]
        elif self.store is not None and caller.owner is not None:
            try:
                newest = await self._stored(self.store.owned, caller.owner, 1)
            except Refused:  # a new chat: the sidebar's list says why nothing is there
                return None
            conversation = newest[0]["id"] if newest else None
        else:
            conversation = None
        if conversation is None:
            return None
        self._showing(caller, tab, conversation)
        try:
            found = await self._found(caller, conversation)
        except Refused:  # a new chat, as above
            return None
        return self._opened(caller, tab, *found) if found else None

    # A long conversation opens with its newest turns; the tab keeps the earlier messages, which its next
    # turn, a rating and an export take with what the page sends, and which the page shows when asked.
    def _opened(self, caller: Caller, tab: str, messages: list[dict], run: Run | None) -> tuple[list[dict], Run | None]:
        key = (caller.session, tab)
        self._earlier.pop(key, None)
        first = len(messages) - OPENED  # the first user message from here on begins what is shown
        cut = next((i for i in range(max(first, 1), len(messages)) if messages[i].get("role") == "user"), 0)
        if first > 0 and cut:
            self._earlier[key] = messages[:cut]
            while len(self._earlier) > MAX_TABS:
                self._earlier.popitem(last=False)
        return self.in_view(caller, tab, messages), run

    def in_view(self, caller: Caller, tab: str, messages: list[dict]) -> list[dict]:
        """A conversation, whole (a reply's as it grows), as the tab shows it: without what it left out."""
        earlier = self._earlier.get((caller.session, tab))
        if not earlier:
            return messages
        note = {
            "role": "assistant",
            "content": "Press **Show earlier messages** (under the message box) to see them.",
            "metadata": {"title": f"{len(earlier)} earlier messages", "id": EARLIER},
        }
        return [note, *messages[len(earlier) :]]

    def whole(self, caller: Caller, tab: str, history: list[dict]) -> list[dict]:
        """The conversation a tab sends (it shows the newest turns of a long one), with what it left out."""
        earlier = self._earlier.get((caller.session, tab))
        if not earlier or not history or message_id(history[0]) != EARLIER:
            return history
        return [*earlier, *history[1:]]

    def left_out(self, caller: Caller, tab: str) -> bool:
        """Whether the tab shows a long conversation's newest turns only."""
        return (caller.session, tab) in self._earlier

    def show_earlier(self, caller: Caller, tab: str, history: list[dict]) -> list[dict]:
        """The whole conversation, for the tab to show from now on."""
        whole = self.whole(caller, tab, history)
        self._earlier.pop((caller.session, tab), None)
        return whole

    @staticmethod
    async def _stored(read: Callable[..., Any], *args: Any) -> Any:
        """A read of the store, off the event loop; Refused in one sentence when its database is unreachable."""
        try:
            return await asyncio.to_thread(read, *args)
        except Unreadable:
            raise Refused(UNREACHABLE) from None

    async def _found(self, caller: Caller, conversation: str) -> tuple[list[dict], Run | None] | None:
        """The caller's conversation as a page shows it, with its reply if it runs here; None if not theirs."""
        if run := self.runs.get(conversation, caller.session):
            return run.messages(), run
        kept = self.store is not None and caller.owner is not None
        stored = await self._stored(self.store.opened, caller.owner, conversation) if kept else None  # type: ignore[union-attr]
        if stored is None:
            return None
        if stored["status"] == "streaming":
            self._elsewhere[(caller.session, conversation)] = None
            while len(self._elsewhere) > MAX_TABS:
                self._elsewhere.popitem(last=False)
        return as_shown(stored), None

    async def elsewhere(self, caller: Caller, tab: str, shown: list[dict] | None = None) -> AsyncIterator[list[dict]]:
        """The conversation the tab shows while its reply streams in another process on the store (a replica:
        the owner's other browser, or the one that served them until it died), as that process saves it, until
        it ends there; one that died is found silent (storage.logs.SILENT) and its reply shows as interrupted.
        `shown`: what the tab shows of it already."""
        conversation = self._tabs.get((caller.session, tab))
        if (caller.session, conversation) not in self._elsewhere:  # (found so only in a store, for an owner)
            return
        del self._elsewhere[(caller.session, conversation)]
        while self._tabs.get((caller.session, tab)) == conversation:
            try:
                stored = await self._stored(self.store.opened, caller.owner, conversation)  # type: ignore[union-attr]
            except Refused:  # the database is unreachable: the page shows what it had
                return
            if stored is None:  # deleted meanwhile
                return
            if (now_shown := self.in_view(caller, tab, as_shown(stored))) != shown:
                yield now_shown
                shown = now_shown
            if stored["status"] != "streaming":
                return
            await asyncio.sleep(SAVE_EVERY / 2)  # it saves every SAVE_EVERY seconds

    def clear(self, caller: Caller, tab: str) -> None:
        """The tab's chat was cleared: its next message starts a new conversation, and so does a reload."""
        if caller.returns:
            self._showing(caller, tab, None)

    def showing(self, caller: Caller, tab: str) -> Run | None:
        """The reply of the conversation this tab shows, if it runs (or ran) here."""
        conversation = self._tabs.get((caller.session, tab))
        return self.runs.get(conversation, caller.session) if conversation else self.latest(caller)

    async def follow(self, run: Run, caller: Caller) -> AsyncIterator[Turn]:
        """The reply as it grows (run.follow()). If the caller goes before it ends and cannot come back, it stops."""
        ended = False
        try:
            async for turn in run.follow():
                yield turn
            ended = True
        finally:
            if not ended and not caller.returns:
                run.stop()  # its connection was the only way to it (gradio_client's job.cancel() is one)

    def latest(self, caller: Caller, conversation: str | None = None) -> Run | None:
        """The latest reply of the conversation (else of the caller's session), running or ended, if it is
        still kept and the caller's."""
        return self.runs.get(conversation or caller.session, caller.session)

    # -- chats named by their client (/api/chat: useChat's chat id) -------------------
    @staticmethod
    def named(caller: Caller) -> str:
        """The conversation a client's chat is, for this caller (whose session names the chat): another
        caller's chat of the same id is another conversation."""
        return str(uuid.uuid5(NAMED, caller.session))

    async def chats(self, caller: Caller, count: int = LISTED) -> list[dict]:
        """The owner's newest `count` chats named by their client: id (the client's), title, updated, status."""
        if caller.owner is None or self.store is None:
            return []
        rows = await self._stored(self.store.owned, caller.owner, count)
        return [{"id": row["chat_id"], **{key: row[key] for key in ("title", "updated", "status")}} for row in rows]

    async def chat(self, caller: Caller, conversation: str) -> tuple[list[dict], dict[str, Exchange]] | None:
        """A kept chat's messages, for its client to show again (a reply still running is left out: the client
        resumes its stream), and the results of its tool calls by record; None if it is not the caller's."""
        found = await self._found(caller, conversation) if caller.owner is not None else None
        if found is None:
            return None
        messages, run = found
        shown = run.before if run is not None and run.running else messages
        await self._recall(caller, conversation, shown, answers=False)  # after a restart: from the store
        exchanges = {record: self._exchanges.get(record) for record in map(message_id, shown)}
        return shown, {
            record: replace(exchange, result=self.redactor.text(exchange.result))
            for record, exchange in exchanges.items()
            if record is not None and exchange is not None
        }

    async def answer(self, text: str, system_prompt: str = "") -> str:
        """One message's whole reply, for other agents (/mcp/); ValueError says what went wrong."""
        if problem := self.problem({"text": text, "files": []}):
            raise ValueError(problem)
        turn = Turn(redactor=self.redactor)
        sent = to_provider_messages(system_prompt or self.settings.system_prompt, [], text)
        try:
            async for waits in self._run(turn, sent, GenerationParams.of(self.configured)):
                if waits is not None:
                    waiting = "(A tool call needs approval in the chat page, so it did not run.)"
                    return self.redactor.text(f"{turn.text}\n\n{waiting}".strip())
        except Exception as exc:
            raise ValueError(describe(exc, self.settings, partial=bool(turn.text))) from None
        if not turn.text:
            raise ValueError(f"The model sent an empty reply. {RETRY}.")
        return self.redactor.text(turn.text)

    async def compare_side(
        self, message: str, history: list[dict], model: str, chosen: Mapping[str, Any], caller: Caller
    ) -> AsyncIterator[Turn]:
        """One side of a comparison: a reply with its own settings, as the chat's turn (the page shows it)."""
        if problem := self.problem({"text": message, "files": []}) or self.not_offered(model):
            raise Refused(problem)
        if too_fast := await self.too_fast(caller):
            raise Refused(too_fast)
        chosen = self.chosen(chosen)
        turn = Turn(redactor=self.redactor)
        try:
            sent = to_provider_messages(
                chosen["system_prompt"], history, message, images=False, exchanges=self._exchanges
            )
            async for _ in self._run(turn, sent, GenerationParams.of(chosen, model)):
                yield turn
        except Exception as exc:
            turn.fail(describe(exc, self.settings, partial=bool(turn.text)))
        turn.ended = not turn.waiting
        yield turn

    # -- feedback ----------------------------------------------------------------
    def rate(self, caller: Caller, tab: str, history: list[dict], index: Any, liked: bool | str) -> bool:
        """Thumbs up or down on a reply (at `index` in what the tab shows), logged with its turn; False when
        there is no such turn."""
        whole = self.whole(caller, tab, history)
        if isinstance(index, int):
            index += len(whole) - len(history)
        return self.recorder.feedback(caller.session, whole, index, liked) is not None

    def comment(self, caller: Caller, text: str) -> bool:
        """A comment on the caller's last rating; False when there is none to attach it to."""
        return self.recorder.comment(caller.session, text)

    def vote(self, caller: Caller, message: str, a: dict, b: dict, verdict: str) -> None:
        if self.store is not None:
            self.store.add_vote(caller.session, message, a, b, verdict)

    # -- files -------------------------------------------------------------------
    def _config(self, model: str, chosen: Mapping[str, Any]) -> ChatConfig:
        return ChatConfig(self.settings.provider, self.settings.base_url, model, dict(chosen))

    def export(self, history: list[dict], model: str, chosen: Mapping[str, Any]) -> tuple[str, str]:
        """The conversation as Markdown, to read, and JSON, to import again: with its config, never the key."""
        config = self._config(model, self.chosen(chosen))
        return to_markdown(history, config), to_json(history, config)

    def load(self, data: bytes) -> Imported:
        """A conversation exported from this app, to continue; Refused says why a file is not one."""
        if len(data) > MAX_IMPORT_BYTES:
            raise Refused(f"The file is over {MAX_IMPORT_BYTES // 2**20} MB; import a chat exported from this app.")
        try:
            history, config = from_json(data)
        except ImportProblem as exc:
            raise Refused(str(exc)) from None
        model = config.model if config.model in self.choices else self.settings.model
        notice = (
            None
            if model == config.model
            else f"{config.model} is not available here, so the chat continues with {model}."
        )
        # Each setting within its range; one the file lacks (exported before it existed) at its default.
        return Imported(history, self.chosen(config.chosen), model, notice)


def as_shown(stored: dict) -> list[dict]:
    """A stored conversation's messages as a page shows them: a reply its process did not finish says so."""
    shown = stored["messages"]
    if stored["status"] == "interrupted":
        mark_interrupted(shown)
    return shown


def mark_interrupted(messages: list[dict]) -> None:
    """Say that the last reply was cut by the app stopping: on its text (before its stats, which a reply the app
    stopped has, where one whose process died has not), if it had begun."""
    asked = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    answers = [i for i in range(asked + 1, len(messages)) if not (messages[i].get("metadata") or {}).get("title")]
    if answers:
        cut = messages[answers[-1]]
        cut["content"] = with_notice(text_of(cut["content"]), INTERRUPTED)


def message_id(message: object) -> str | None:
    """The id a shown message carries in its metadata (a tool step's record, the earlier-messages note)."""
    if not isinstance(message, dict) or not isinstance(metadata := message.get("metadata"), dict):
        return None
    return found if isinstance(found := metadata.get("id"), str) else None
