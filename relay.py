"""Relay a provider's text deltas to the screen as cumulative, coalesced updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from errors import DeadlineExceeded


async def coalesce(deltas: AsyncIterator[str], interval: float, deadline: float) -> AsyncIterator[str]:
    """Yield the reply so far: the first text at once, then at most one update per
    `interval` seconds, and always the final text.

    Each update repeats the whole text so far (Gradio sends the difference as an
    append). Tokens arriving faster than the screen needs are batched rather
    than each costing a round of diffing and rendering. If the source fails, the
    text that arrived is yielded first and then its error is raised.

    A single task reads the source, so the provider's stream is opened and closed
    in one task; cancelling this generator cancels it, which closes the stream.
    """
    parts: list[str] = []
    arrived = asyncio.Event()

    async def pump() -> None:
        try:
            async with asyncio.timeout(deadline) as timer:
                async for delta in deltas:
                    parts.append(delta)
                    arrived.set()
        except TimeoutError:
            if timer.expired():
                raise DeadlineExceeded() from None
            raise
        finally:
            arrived.set()

    reader = asyncio.create_task(pump(), name="relay")
    shown = 0
    try:
        while True:
            await arrived.wait()
            arrived.clear()
            if reader.done():
                break
            if len(parts) != shown:
                shown = len(parts)
                yield "".join(parts)
            # Let more text gather, but stop waiting the moment the reply is complete.
            await asyncio.wait((reader,), timeout=interval)
        if len(parts) != shown:
            yield "".join(parts)
        reader.result()  # re-raise the source's error, if any
    finally:
        if not reader.done():
            reader.cancel()
            await asyncio.wait((reader,))
