"""Small helpers shared by the tests and the benchmark."""

from __future__ import annotations

import os
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from config import Settings, load_settings
from testkit.fake_openai import FakeOpenAI
from testkit.processes import ROOT
from tools.servers import ServerSpec

SKIP_MISSING = "CHAT_TESTS_SKIP_MISSING"  # =1: skip the areas whose parts are not installed


def missing(reason: str) -> None:
    """A part a test area needs is not installed: fail, so that a green run means the whole suite ran,
    unless the person running the tests chose to skip such areas (CHAT_TESTS_SKIP_MISSING=1)."""
    import pytest

    if os.environ.get(SKIP_MISSING) == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (or set {SKIP_MISSING}=1 to skip these tests)")


@contextmanager
def launched(settings, models: tuple[str, ...] | list[str] = (), hub=None, store=None) -> Iterator[str]:
    """The app built from these settings (with a started tools.hub.ToolHub and storage.logs.LogStore,
    if given), served on loopback for the block; yields its URL."""
    from app import build_app, serve  # here, so that the benchmark can use this module without loading Gradio

    demo = build_app(settings, models, hub, store)
    serving = serve(demo, settings, prevent_thread_lock=True, quiet=True)
    try:
        yield serving.url
    finally:
        serving.stop()


@contextmanager
def launched_with_tools(settings, hub, store=None) -> Iterator[str]:
    """The app with this tools.hub.ToolHub, which is started for the block and closed after it (and a started
    storage.logs.LogStore, if given); yields its URL."""
    hub.start()
    try:
        with launched(settings, hub=hub, store=store) as url:
            yield url
    finally:
        hub.close()


def emptied(url: str) -> str:
    """The PostgreSQL database with no table left (the test session's server is shared): each test starts afresh."""
    import sqlalchemy as sa

    from storage.logs import database_url

    engine = sa.create_engine(database_url(url))
    with engine.begin() as connection:
        found = sa.MetaData()
        found.reflect(connection)
        found.drop_all(connection)
    engine.dispose()
    return url


def logged_turns(store, timeout: float = 10.0) -> list[dict]:
    """The log's turns once its writer has written one (a turn is logged after its reply ends), or none."""
    deadline = time.monotonic() + timeout
    while not store.find() and time.monotonic() < deadline:
        store.flush()
        time.sleep(0.1)
    return store.find()


def answer_text(messages: list[dict]) -> str:
    """The answer in a /chat result: the messages without a title (thinking and stats have one)."""
    return "".join(m["content"] for m in messages if not (m.get("metadata") or {}).get("title"))


def message(text: str, *files: str) -> dict:
    """A /chat message: the multimodal textbox's {"text", "files"}; files are local paths to upload."""
    from gradio_client import handle_file

    return {"text": text, "files": [handle_file(path) for path in files]}


def ask(client, text: str, *params, files: tuple[str, ...] = ()) -> str:
    """Send a message through /chat and return the answer's text."""
    return answer_text(client.predict(message(text, *files), *params, api_name="/chat"))


def submit(client, text: str, *params, files: tuple[str, ...] = ()):
    """Start a /chat reply; the job yields lists of messages."""
    return client.submit(message(text, *files), *params, api_name="/chat")


def png(path: Path, width: int = 2, height: int = 2) -> bytes:
    """Write a tiny valid PNG; returns its bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return data


def queue_call(http, url: str, fn_index: int, data: list, session: str) -> dict:
    """One event through Gradio's queue as a browser sends it (raw HTTP, so no client-side file upload):
    the process_completed message, or {"success": False} when the join itself is refused (400, 422)."""
    import json

    join = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    joined = http.post(url + "gradio_api/queue/join", json=join)
    assert joined.status_code in (200, 400, 422), joined.text  # 400, 422: refused with a reason
    if joined.status_code != 200:
        return {"success": False}
    with http.stream("GET", url + f"gradio_api/queue/data?session_hash={session}") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                return message
    raise AssertionError("no process_completed")


def fn_index(url: str, api_name: str) -> int:
    """The id of the event with this API name in a Gradio app's config."""
    import httpx

    config = httpx.get(url + "config", timeout=10).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


# A made-up key: tests check that it never shows up anywhere a user can see.
SENTINEL_KEY = "sk-test-SENTINEL-0123456789abcdef"


def remote_settings(server: FakeOpenAI, **overrides) -> Settings:
    """Settings for the openai provider pointed at the loopback server, as a user would configure it.

    Rate limits are off: every test talks from 127.0.0.1, so they would add up across tests."""
    env = {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": server.base_url}
    flags = [
        "--model",
        "fake-model",
        "--timeout",
        "2",
        "--max-retries",
        "0",
        "--rate-limit",
        "0",
        "--rate-limit-ip",
        "0",
    ]
    settings = load_settings(flags, env)
    return replace(settings, **overrides)


TOOL_SECRET = "tool-secret-0123456789"


def stdio_server(log: Path, name: str = "test", approve: bool = False) -> ServerSpec:
    env = {"MCP_TEST_LOG": str(log), "TEST_SECRET": TOOL_SECRET}
    return ServerSpec(
        name,
        command=sys.executable,
        args=("-m", "testkit.mcp_tools_server"),
        cwd=str(ROOT),
        env=env,
        approve=approve,
        secrets=(TOOL_SECRET,),
    )


def wait_for_line(log: Path, line: str, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if line in log.read_text().splitlines():
            return True
        time.sleep(0.02)
    return False
