"""The coalescing relay: first text at once, batched updates, the whole reply at the end, clean cancel."""

import asyncio
import itertools
import time

import pytest

from core.errors import DeadlineExceeded
from core.relay import Pacer, coalesce
from core.reply import Reply


def run(coro):
    return asyncio.run(coro)


async def collect(source, interval=0.05, deadline=30.0) -> list[str]:
    """The texts shown while streaming, then the final one, which the caller shows."""
    reply = Reply()
    shown = [update.text async for update in coalesce(source, reply, Pacer(interval), deadline)]
    return [*shown, reply.text]


def test_updates_are_cumulative_append_only_and_end_with_the_whole_text():
    async def source():
        for i in range(50):
            await asyncio.sleep(0.002)
            yield f"t{i} "

    *shown, final = run(collect(source()))
    assert final == "".join(f"t{i} " for i in range(50))
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise([*shown, final]))
    assert len(set(shown)) == len(shown) >= 1


def test_fast_tokens_are_batched_to_about_one_update_per_interval():
    async def source():
        for _ in range(300):
            await asyncio.sleep(0.001)
            yield "x"

    async def measure():
        started = time.monotonic()
        updates = await collect(source(), interval=0.05)
        return updates, time.monotonic() - started

    updates, elapsed = run(measure())
    assert updates[-1] == "x" * 300
    # first update at once, then one per interval at most, then the final text
    assert len(updates) <= elapsed / 0.05 + 2
    assert len(updates) < 300


def test_first_text_is_shown_before_the_source_produces_more():
    events: list[str] = []

    async def source():
        yield "first"
        await asyncio.sleep(0.3)
        events.append("source produced more")
        yield " second"

    async def consume():
        reply = Reply()
        async for update in coalesce(source(), reply, Pacer(1.0), deadline=30):
            events.append(f"shown {update.text!r}")
        events.append(f"ended {reply.text!r}")

    run(consume())
    assert events == ["shown 'first'", "source produced more", "ended 'first second'"]


def test_text_gathered_during_a_pause_is_shown_without_waiting_for_the_next_token():
    events: list[str] = []

    async def source():
        yield "a"
        await asyncio.sleep(0.005)
        yield "b"  # arrives within the interval after "a" was shown
        await asyncio.sleep(0.5)  # a long pause
        events.append("source resumed after pause")
        yield "c"

    async def consume():
        reply = Reply()
        async for update in coalesce(source(), reply, Pacer(0.05), deadline=30):
            events.append(f"shown {update.text!r}")
        events.append(f"ended {reply.text!r}")

    run(consume())
    assert events == ["shown 'a'", "shown 'ab'", "source resumed after pause", "ended 'abc'"]


def test_a_failing_source_shows_its_text_then_raises():
    async def source():
        yield "partial "
        yield "text"
        raise ConnectionError("boom")

    async def consume():
        reply = Reply()
        with pytest.raises(ConnectionError):
            async for _ in coalesce(source(), reply, Pacer(0.05), deadline=30):
                pass
        return reply

    reply = run(consume())
    assert reply.text == "partial text" and reply.ended is not None


def test_the_deadline_stops_a_reply_that_takes_too_long():
    async def source():
        yield "slow"
        await asyncio.sleep(60)
        yield "never"

    async def consume():
        with pytest.raises(DeadlineExceeded):
            await collect(source(), deadline=0.2)

    run(consume())


def test_cancelling_the_consumer_closes_the_source():
    closed = asyncio.Event()

    async def source():
        try:
            yield "one"
            await asyncio.sleep(60)
            yield "two"
        finally:
            closed.set()

    async def consume():
        task = asyncio.create_task(collect(source()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return closed.is_set()

    assert run(consume())


def test_an_empty_source_yields_nothing():
    async def source():
        return
        yield

    assert run(collect(source())) == [""]  # nothing shown while streaming; an empty final reply


@pytest.mark.parametrize(
    ("interval", "streaming", "expected"),
    [
        (0.05, 1, 0.05),  # one reply: the configured interval
        (0.05, 5, 0.05),  # few replies: still the configured interval (5 / 100 = 0.05)
        (0.05, 20, 0.2),  # 20 replies share 100 updates a second
        (0.05, 64, 0.5),  # many: never less often than every 0.5 s
        (1.0, 1, 1.0),  # a configured interval above the ceiling is respected
    ],
)
def test_the_pacer_spreads_its_budget_over_the_replies_streaming(interval, streaming, expected):
    assert Pacer(interval, per_second=100, streaming=streaming).next_interval() == pytest.approx(expected)


def test_the_pacer_counts_a_reply_while_it_streams_and_not_after_it_ends():
    pacer = Pacer(0.05)

    async def failing():
        yield "text"
        await asyncio.sleep(0.2)
        raise ConnectionError("boom")

    async def endless():
        yield "text"
        await asyncio.sleep(60)

    async def consume() -> list[int]:
        seen = []
        with pytest.raises(ConnectionError):
            async for _ in coalesce(failing(), Reply(), pacer, deadline=30):
                seen.append(pacer.streaming)
        seen.append(pacer.streaming)  # after an error
        updates = coalesce(endless(), Reply(), pacer, deadline=30)
        await anext(updates)
        seen.append(pacer.streaming)
        await updates.aclose()  # as a Stop does
        seen.append(pacer.streaming)
        return seen

    assert run(consume()) == [1, 0, 1, 0]
