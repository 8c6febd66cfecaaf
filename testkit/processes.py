"""Starting the app as a user does (python app.py) and reading its output."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
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
        # A pipe is block-buffered otherwise; the fault handler prints every thread's stack on SIGABRT.
        env=env | {"PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
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


def free_port(following: int = 0) -> int:
    """A loopback port nothing listens on, for a server that binds it itself; and the `following` ports after it
    too (deploy/replicas.py's replicas take those).

    Taken below the kernel's ephemeral range, so that no socket bound to port 0 (every client
    connection, every other test's server) can be given it between now and its use; and never
    the same one twice in a run."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(20_000, low - following)
        run = range(port, port + following + 1)
        if any(taken in _handed_out for taken in run) or not all(map(_bindable, run)):
            continue
        _handed_out.update(run)
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def rss_mb(pid: int) -> float:
    """A process's resident set size, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


class PostgresMissing(Exception):
    """Debian's PostgreSQL server is not installed."""


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server (Debian's) on a loopback port, in a temporary folder, for the block; yields the URL
    of its database `chats` (user `chat`, no password). Ended by its id after."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise PostgresMissing(
            "no PostgreSQL server: `apt-get install -y postgresql` (tests/install.sh does) to run these tests"
        )
    bin_dir = found[-1].parent  # the newest version
    # Not under pytest's folder: that one is readable by its owner only, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="chat-test-postgres-"))
    data = folder / "data"
    # The server refuses to run as root: as root, run it as the postgres user (Debian's package makes one).
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "chat", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "PostgreSQL did not start"
                time.sleep(0.1)
        subprocess.run(
            [*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "chat", "chats"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql://chat@127.0.0.1:{port}/chats"
    finally:
        server.terminate()  # the server's own process (runuser passes the signal on)
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
