"""Small helpers shared by the tests and the benchmark."""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
