"""Shared fixtures: the loopback provider, the launched app, and clients for it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client

from config import Settings, load_settings
from tests.fake_openai import FakeOpenAI
from tests.support import launched

# A made-up key: tests check that it never shows up anywhere a user can see.
SENTINEL_KEY = "sk-test-SENTINEL-0123456789abcdef"


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def server(fake_server: FakeOpenAI) -> FakeOpenAI:
    """The loopback provider, reset for this test."""
    fake_server.reset()
    return fake_server


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


@pytest.fixture(scope="session")
def app_url(fake_server: FakeOpenAI) -> Iterator[str]:
    with launched(remote_settings(fake_server)) as url:
        yield url


@pytest.fixture
def client(app_url: str, server: FakeOpenAI) -> Client:
    """A new API session: its chat history starts empty."""
    return Client(app_url, verbose=False)


def _tree_status() -> str | None:
    """`git status` of the checkout (tracked changes and untracked files), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True, text=True
    )
    return result.stdout if result.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def tests_leave_the_tree_as_it_was() -> Iterator[None]:
    """Tests write to temporary folders only; a file written or changed in the checkout fails the run."""
    before = _tree_status()
    yield
    after = _tree_status()
    assert before == after, f"the tests changed the working tree:\n{after}"
