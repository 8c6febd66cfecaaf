"""Shared fixtures: the loopback provider, the launched app, and clients for it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.support import remote_settings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client

from testkit.fake_openai import FakeOpenAI
from testkit.support import launched, missing

# A run started in the background (`nohup bash .ci/run &`) has Ctrl-C ignored, and so would every app the tests
# start (an ignored signal stays ignored across exec): the Ctrl-C tests need it as a terminal gives it.
signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on a loopback port, in a temporary folder, for this test session."""
    from testkit.processes import PostgresMissing, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except PostgresMissing as exc:
        missing(str(exc))
