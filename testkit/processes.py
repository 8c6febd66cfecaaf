"""Starting the app as a user does (python app.py) and reading its output."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spawn(env: dict[str, str], *flags: str, cwd: Path = ROOT) -> tuple[subprocess.Popen, queue.Queue[str]]:
    """Start `python app.py`; its output lines arrive on the queue."""
    proc = subprocess.Popen(
        [sys.executable, "app.py", *flags],
        cwd=cwd,
        env=env | {"PYTHONUNBUFFERED": "1"},  # a pipe is block-buffered otherwise
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return proc, lines


def wait_until_serving(proc: subprocess.Popen, lines: queue.Queue[str], seen: list[str]) -> None:
    deadline = time.monotonic() + 60
    while not any("Running on local URL" in line for line in seen):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
        with contextlib.suppress(queue.Empty):
            seen.append(lines.get(timeout=1))


@contextlib.contextmanager
def app_running(env: dict[str, str], *flags: str) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """`python app.py` with these flags, once it serves: (the process, its output so far). Ended by its id after,
    and its output printed, which pytest shows when the test fails."""
    proc, lines = spawn(env, *flags)
    seen: list[str] = []
    try:
        wait_until_serving(proc, lines, seen)
        yield proc, seen
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        while not lines.empty():
            seen.append(lines.get_nowait())
        print("".join(seen))


# The data folder of every app these start: its default conversation store goes there, not in the user's.
DATA_HOME = tempfile.TemporaryDirectory(prefix="chat-data-")


def base_env(port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "XDG_DATA_HOME": tempfile.mkdtemp(dir=DATA_HOME.name),  # each app its own
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_PORT": str(port),
    }


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
