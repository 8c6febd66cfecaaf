"""Small helpers shared by the tests and the benchmark."""

from __future__ import annotations

import socket
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
def launched(settings) -> Iterator[str]:
    """The app built from these settings, served on loopback for the block; yields its URL."""
    from app import build_app  # here, so that the benchmark can use this module without loading Gradio

    demo = build_app(settings)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()
