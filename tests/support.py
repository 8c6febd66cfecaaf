"""Small helpers shared by the tests and the benchmark."""

from __future__ import annotations

import os
import random
import socket
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SKIP_MISSING = "CHAT_TESTS_SKIP_MISSING"  # =1: skip the areas whose parts are not installed


def missing(reason: str) -> None:
    """A part a test area needs is not installed: fail, so that a green run means the whole suite ran,
    unless the person running the tests chose to skip such areas (CHAT_TESTS_SKIP_MISSING=1)."""
    import pytest

    if os.environ.get(SKIP_MISSING) == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (or set {SKIP_MISSING}=1 to skip these tests)")


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, for a server that binds it itself.

    Taken below the kernel's ephemeral range, so that no socket bound to port 0 (every client
    connection, every other test's server) can be given it between now and its use; and never
    the same one twice in a run."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(20_000, low)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def rss_mb(pid: int) -> float:
    """A process's resident set size, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


@contextmanager
def launched(settings, models: tuple[str, ...] | list[str] = (), hub=None, store=None) -> Iterator[str]:
    """The app built from these settings (with a started tools.hub.ToolHub and workbench.store.LogStore,
    if given), served on loopback for the block; yields its URL."""
    from app import build_app, serve  # here, so that the benchmark can use this module without loading Gradio

    demo = build_app(settings, models, hub, store)
    _, url, _ = serve(demo, settings, prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()


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
