"""Relay a provider's stream to the screen as coalesced updates of the whole reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from core.errors import DeadlineExceeded
from core.events import Event
from core.reply import Reply

UPDATES_PER_SECOND = 100.0


@dataclass
class Pacer:
    """How often each streaming reply may update the screen.

    Every `interval` seconds while few replies stream; when many stream at once, less
    often, so that together they send at most `per_second` updates (never less often
    than every `slowest` seconds). Under load Gradio's cost per update, not the
    cost per token, is what fills the CPU.
    """

    interval: float
    per_second: float = UPDATES_PER_SECOND
    slowest: float = 0.5
    streaming: int = 0  # replies streaming now

    def next_interval(self) -> float:
        return min(max(self.interval, self.streaming / self.per_second), max(self.slowest, self.interval))


async def coalesce(
    events: AsyncIterator[Event], reply: Reply, pacer: Pacer, deadline: float, *, announce: bool = False
) -> AsyncIterator[Reply]:
    """Feed `events` into `reply`, yielding it while it streams: the first text at once,
    then at most once per pacer.next_interval() seconds. When this ends (or raises the
    source's error) `reply.finish()` has run and the caller shows the final state.

    With announce, it also yields once as soon as the source is being read, before any
    text: the caller's screen update then overlaps the provider's request.

    Each update repeats the whole reply so far (Gradio sends the difference as an
    append). Tokens arriving faster than the screen needs are batched rather
    than each costing a round of diffing and rendering.

    A single task reads the source, so the provider's stream is opened and closed
    in one task; cancelling this generator cancels it, which closes the stream.
    """
    changes = 0
    arrived = asyncio.Event()

    async def pump() -> None:
        nonlocal changes
        try:
            async with asyncio.timeout(deadline) as timer:
                async for event in events:
                    reply.add(event)
                    changes += 1
                    arrived.set()
        except TimeoutError:
            if timer.expired():
                raise DeadlineExceeded() from None
            raise
        finally:
            reply.finish()
            arrived.set()

    reader = asyncio.create_task(pump(), name="relay")
    shown = 0
    pacer.streaming += 1
    try:
        if announce:
            yield reply
        while True:
            await arrived.wait()
            arrived.clear()
            if reader.done():
                break
            if changes != shown and reply.first_token is not None:
                shown = changes
                yield reply
            # Let more text gather, but stop waiting the moment the reply is complete.
            await asyncio.wait((reader,), timeout=pacer.next_interval())
        reader.result()  # re-raise the source's error, if any
    finally:
        pacer.streaming -= 1
        if not reader.done():
            reader.cancel()
            await asyncio.wait((reader,))
