"""Load and leaks: many users for a minute, and hundreds of cancelled replies.

The 64 users speak Gradio's queue protocol with a small asyncio client rather than 64
gradio_client sessions, whose polling threads would load a 2-core machine more than the
app under test does. Loops are bounded in count and time, and use loopback only.
"""

import asyncio
import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from gradio_client import Client

from testkit.fake_openai import FakeOpenAI, Reply
from testkit.processes import free_port, rss_mb
from testkit.support import answer_text, launched, remote_settings, submit

ROOT = Path(__file__).resolve().parent.parent
USERS, SECONDS = 64, 60.0
REPLY_TOKENS = 40  # at 20 ms each: 0.8 s a reply


async def chat_once(client: httpx.AsyncClient, url: str, fn_index: int, session: str, message: str) -> str:
    """One message through Gradio's queue, as the browser sends it; returns the final reply."""
    data = [{"text": message, "files": []}, None, "Be brief.", 0.7, 1024, 1.0, "fake-model"]
    join = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    (await client.post(url + "gradio_api/queue/join", json=join)).raise_for_status()
    async with client.stream("GET", url + f"gradio_api/queue/data?session_hash={session}") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:") and (event := json.loads(line[5:]))["msg"] == "process_completed":
                if not event.get("success"):
                    raise RuntimeError(f"failed: {event}")
                return answer_text(event["output"]["data"][0])
    raise RuntimeError("the stream ended without a result")


def test_64_users_for_a_minute_all_replies_complete_once_in_the_log_and_memory_stays_bounded(
    fake_server: FakeOpenAI, tmp_path: Path
):
    fake_server.reset()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_db = tmp_path / "load.db"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OPENAI_API_KEY": "sk-load", "CHAT_MODEL": "fake-model",
           "OPENAI_BASE_URL": fake_server.base_url, "GRADIO_SERVER_PORT": str(port), "CHAT_CONCURRENCY": "64",
           "CHAT_RATE_LIMIT": "0", "CHAT_RATE_LIMIT_IP": "0", "CHAT_LOG_DB": str(log_db)}  # fmt: skip
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                config = httpx.get(url + "config", timeout=1).json()
                break
            except httpx.HTTPError:
                assert app.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
        expected = "".join(f"w{i} " for i in range(REPLY_TOKENS))
        per_user: list[int] = []
        failures: list[str] = []
        rss: list[float] = []

        async def user(client: httpx.AsyncClient, stop_at: float) -> None:
            """One person in one browser tab: a session of their own, message after message."""
            session = uuid.uuid4().hex[:12]
            per_user.append(0)
            me = len(per_user) - 1
            while time.monotonic() < stop_at:
                try:
                    reply = await chat_once(client, url, fn_index, session, f"bench:{REPLY_TOKENS}:20")
                    if reply == expected:
                        per_user[me] += 1
                    else:
                        failures.append(f"incomplete: {reply[-80:]!r}")
                except Exception as exc:  # counted, not raised: the test reports every failure
                    failures.append(repr(exc))

        async def sample_memory(stop_at: float) -> None:
            while time.monotonic() < stop_at:
                rss.append(rss_mb(app.pid))
                await asyncio.sleep(1)

        async def everyone() -> None:
            stop_at = time.monotonic() + SECONDS
            limits = httpx.Limits(max_connections=USERS * 2)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                await asyncio.gather(sample_memory(stop_at), *[user(client, stop_at) for _ in range(USERS)])

        started = time.monotonic()
        asyncio.run(everyone())
        elapsed = time.monotonic() - started
    finally:
        app.terminate()
        app.wait(15)
    print(f"\n{USERS} users, {elapsed:.0f} s: {sum(per_user)} replies complete (each user {min(per_user)}-"
          f"{max(per_user)}), {len(failures)} failures; "
          f"app RSS {rss[0]:.0f} MB at start, {max(rss):.0f} MB peak, {rss[-1]:.0f} MB at the end")  # fmt: skip
    assert failures == []
    # Nobody starved: every user's replies kept coming (alone, one takes 0.8 s: about 70 in the minute;
    # how many each gets under load is the benchmark's figure, not this test's).
    assert len(per_user) == USERS and min(per_user) >= 3
    third = len(rss) // 3
    assert max(rss[-third:]) <= max(rss[:third]) + 30  # no growth over the minute: memory is bounded
    assert fake_server.open_streams == 0
    with sqlite3.connect(log_db) as db:  # every finished turn, once (the app wrote its queue as it stopped)
        logged = db.execute("SELECT count(*), count(DISTINCT id), count(DISTINCT session) FROM chat_turns").fetchone()
        statuses = db.execute("SELECT DISTINCT status FROM chat_turns").fetchall()
    assert logged == (sum(per_user), sum(per_user), USERS) and statuses == [("done",)]


def pending_tasks(name: str | None = None) -> list[asyncio.Task]:
    return [t for t in gc.get_objects() if isinstance(t, asyncio.Task) and not t.done()
            and (name is None or t.get_name() == name)]  # fmt: skip


def test_200_start_then_cancel_cycles_leak_nothing(client: Client, server: FakeOpenAI):
    server.default = Reply(text=" ".join(f"t{i}" for i in range(200)), delay=0.02)

    def cycle() -> None:
        started = server.streams_started
        job = submit(client, "Go")
        assert server.wait_for(lambda: server.streams_started > started, timeout=10)
        job.cancel()

    for _ in range(10):  # warm up: thread pools and connection pools reach their working size
        cycle()
    assert server.wait_for(lambda: server.open_streams == 0, timeout=10)
    gc.collect()
    threads, tasks = threading.active_count(), len(pending_tasks())
    for _ in range(200):
        cycle()
    assert server.wait_for(lambda: server.open_streams == 0, timeout=10)
    assert server.streams_started == 210 and len(server.closed_early) == 210
    deadline = time.monotonic() + 5
    while pending_tasks("relay") and time.monotonic() < deadline:
        time.sleep(0.1)
    gc.collect()
    threads_after, tasks_after = threading.active_count(), len(pending_tasks())
    print(f"\nafter 200 cancels: threads {threads} -> {threads_after}, pending asyncio tasks {tasks} -> {tasks_after}")
    assert pending_tasks("relay") == []  # our own reader tasks: every one ended
    # Gradio and the client start short-lived tasks and threads of their own (heartbeats, pools), so allow a
    # few; a leak would grow with the 200 cycles.
    assert tasks_after <= tasks + 3
    assert threads_after <= threads + 3


def test_concurrency_above_40_means_that_many_streams_open_at_once(server: FakeOpenAI):
    """Gradio's default max_threads (40) would cap the replies in flight, whatever --concurrency says."""
    users = 64
    with launched(remote_settings(server, concurrency=users)) as url:
        config = httpx.get(url + "config", timeout=10).json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")

        async def everyone() -> list[str]:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=2 * users)) as client:
                # 3 s replies: the last to start begins long before the first ends, even on a slow machine.
                text = "bench:150:20"
                chats = [chat_once(client, url, fn_index, uuid.uuid4().hex[:10], text) for _ in range(users)]
                return await asyncio.gather(*chats)

        replies = asyncio.run(everyone())
    assert server.peak_open_streams == users
    assert replies == ["".join(f"w{i} " for i in range(150))] * users
