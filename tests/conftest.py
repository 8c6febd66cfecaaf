"""Shared fixtures: the loopback provider, the launched app, and clients for it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.support import remote_settings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client

from testkit.fake_openai import FakeOpenAI
from testkit.support import launched, missing


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def provider_starts_fresh(request: pytest.FixtureRequest) -> None:
    """Every test that uses the loopback provider finds it as new, whatever an earlier test left."""
    if "fake_server" in request.fixturenames:
        request.getfixturevalue("fake_server").reset()


@pytest.fixture
def server(fake_server: FakeOpenAI) -> FakeOpenAI:
    """The loopback provider, reset for this test (provider_starts_fresh)."""
    return fake_server


@pytest.fixture(scope="session")
def app_url(fake_server: FakeOpenAI) -> Iterator[str]:
    with launched(remote_settings(fake_server)) as url:
        yield url


@pytest.fixture
def client(app_url: str, server: FakeOpenAI) -> Client:
    """A new API session: its chat history starts empty."""
    return Client(app_url, verbose=False)


TOOL_CACHES = {".git", "__pycache__", ".pytest_cache", ".ruff_cache"}  # written by git, Python, pytest, ruff


def _tree() -> dict[str, tuple[int, int]]:
    """Every file in the checkout (ignored by git or not: .gradio/, flagged/, ...) with its size and mtime;
    the tools' own caches left out. Works outside git too."""
    root = Path(__file__).resolve().parent.parent
    files = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in TOOL_CACHES]
        for name in names:
            path = Path(folder, name)
            info = path.lstat()
            files[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return files


@pytest.fixture(scope="session", autouse=True)
def tests_leave_the_tree_as_it_was() -> Iterator[None]:
    """Tests write to temporary folders only; a file written or changed in the checkout fails the run
    (README_SCREENSHOTS=1 asks the browser tests to write the README's images in docs/, and only those)."""
    before = _tree()
    yield
    after = _tree()
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    if os.environ.get("README_SCREENSHOTS") == "1":
        changed = [path for path in changed if not (path.startswith("docs/") and path.endswith(".png"))]
    assert not changed, f"the tests changed the working tree: {changed}"


def _postgres_bin() -> Path | None:
    """Debian's PostgreSQL server programs (tests/install.sh installs the package), newest version first."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on a loopback port, in a temporary folder, for this test session."""
    import shutil
    import socket
    import tempfile
    import time

    bin_dir = _postgres_bin()
    if bin_dir is None:
        missing("no PostgreSQL server: `apt-get install -y postgresql` (tests/install.sh does) to run these tests")
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
    from testkit.processes import free_port

    port = free_port()
    server = subprocess.Popen(
        [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
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
