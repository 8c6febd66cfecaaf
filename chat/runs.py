"""Replies that run on the server apart from the connections watching them: started once, followed by any number.

A page reload, a dropped phone connection or a closed tab ends a follower, not the reply: it goes on (bounded by
--deadline and max tokens, or by --stop-unwatched) and a new follower sees it from the start, then as it grows.
Stop ends the reply itself."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from core.turn import Turn

MAX_KEPT = 10_000  # conversations whose last reply is kept for a follower to come back to; the oldest go first


@dataclass(eq=False)
class Run:
    """One reply running as its own task. `before` is the conversation up to it, as the page shows it."""

    key: str
    before: list[dict]
    owner: str = ""  # whose it is: only they follow, stop or see it
    reply_id: str = field(default_factory=lambda: f"msg-{secrets.token_hex(8)}")  # the same for every follower
    turn: Turn | None = None  # the reply as it grows: the same object, updated in place
    # While it runs. Let go when it ends, with all the task holds (its context: the request), as is the store's
    # on_change: a process keeps thousands of ended replies for followers who come back, and they need only this.
    task: asyncio.Task | None = None
    refusal: Exception | None = None  # what refused the message (raised before the reply began), for each follower
    version: int = 0  # +1 at each update; a follower yields when it has not seen the newest
    watchers: int = 0
    ended: str = ""  # "" while it runs, then "done", or "stopped" (Stop) or "interrupted" (the app stopped)
    unwatched_since: float | None = None
    stop_unwatched: float = 0.0
    on_change: Callable[[Run], None] | None = None  # told of each update and of the end (the store saves it)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _ending: str = "stopped"  # what a cancellation of its task means

    async def drive(self, turns: AsyncIterator[Turn]) -> None:
        try:
            async for turn in turns:
                self.turn = turn
                self._update()
        except asyncio.CancelledError:
            self.ended = self._ending
            raise
        except Exception as refusal:  # any later failure is in the turn
            self.refusal = refusal
        finally:
            self.ended = self.ended or "done"  # a failure too: the turn says so
            self.task = None
            self._update()  # followers see the end
            self.on_change = None

    def _update(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.on_change is not None:
            self.on_change(self)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def stopped(self) -> bool:
        """Whether it ended before its reply did (Stop, or the app stopping)."""
        return self.ended in ("stopped", "interrupted")

    def messages(self) -> list[dict]:
        """The conversation with the reply as far as it is."""
        return [*self.before, *(self.turn.messages() if self.turn else [{"role": "assistant", "content": ""}])]

    async def follow(self) -> AsyncIterator[Turn]:
        """The reply from the start, then each update until it ends. A failure that refused the message
        (raised before the reply began) is raised here."""
        seen = 0
        self.watchers += 1
        self.unwatched_since = None
        try:
            while True:
                changed = self._changed
                if self.version != seen:
                    seen = self.version
                    if self.turn is not None:
                        yield self.turn
                    continue
                if self.task is None or self.task.done():
                    break
                await changed.wait()
            if self.refusal is not None:
                raise self.refusal
        finally:
            self.watchers -= 1
            if not self.watchers:
                self.unwatched_since = time.monotonic()
                if self.stop_unwatched and self.running:
                    asyncio.get_running_loop().call_later(self.stop_unwatched, self._stop_if_unwatched)

    def _stop_if_unwatched(self) -> None:
        left = self.unwatched_since  # None: someone watches again (each leaving sets its own timer)
        if self.watchers == 0 and left is not None and time.monotonic() - left >= self.stop_unwatched * 0.99:
            self.stop()

    def stop(self, ending: str = "stopped") -> None:
        """End the reply: its upstream request is closed, the text so far kept (the log marks it `ending`)."""
        if self.running:
            self._ending = ending
            self.task.cancel()  # type: ignore[union-attr]

    async def stopped_now(self) -> None:
        """stop(), and wait until the reply has ended."""
        self.stop()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class Runs:
    """The replies of this process by conversation key: the one running, or the last one, of each."""

    def __init__(self, stop_unwatched: float = 0.0) -> None:
        self.stop_unwatched = stop_unwatched  # seconds a reply goes on with no follower (0: until it ends)
        self._by_key: OrderedDict[str, Run] = OrderedDict()

    def start(
        self,
        key: str,
        before: list[dict],
        turns: AsyncIterator[Turn],
        *,
        owner: str = "",
        reply_id: str | None = None,
        on_change: Callable[[Run], None] | None = None,
    ) -> Run:
        """Run `turns` as a task, the conversation's latest reply. An earlier one still running goes on for
        those who watch it (two tabs of one visitor)."""
        run = Run(key, before, owner=owner, stop_unwatched=self.stop_unwatched, on_change=on_change)
        run.reply_id = reply_id or run.reply_id
        run.task = asyncio.get_running_loop().create_task(run.drive(turns), name=f"reply {key}")
        self._by_key[key] = run
        self._by_key.move_to_end(key)
        while len(self._by_key) > MAX_KEPT:
            oldest = next(iter(self._by_key))
            if self._by_key[oldest].running:
                break  # a running reply is never forgotten; the kept ones shrink once it ends
            del self._by_key[oldest]
        return run

    def get(self, key: str, owner: str = "") -> Run | None:
        """The conversation's latest reply, if it is the owner's."""
        run = self._by_key.get(key)
        return run if run is not None and run.owner == owner else None

    async def interrupt(self, timeout: float) -> None:
        """The app stops: every running reply ends now, its text so far kept and marked interrupted. Returns once
        their followers have ended too (at most `timeout` s later): a tab's queue stream ends by itself only if
        its event completes before Gradio's queue is closed."""
        running = [run for run in self._by_key.values() if run.running]
        for run in running:
            run.stop("interrupted")
        deadline = time.monotonic() + timeout
        while any(run.running or run.watchers for run in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def drop(self, key: str, owner: str = "") -> None:
        """Forget the conversation's reply, if it is the owner's: stopped if it runs, and not saved again."""
        if run := self.get(key, owner):
            run.on_change = None  # its last save would bring a deleted conversation back
            run.stop()
            del self._by_key[key]
