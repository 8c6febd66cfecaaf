"""Secrets and access: the key never leaves for anywhere but the provider; optional login."""

import contextlib

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from tests.conftest import SENTINEL_KEY
from tests.fake_openai import FakeOpenAI, Reply
from tests.support import ask, free_port
from tests.test_startup import base_env, spawn, wait_until_serving


@contextlib.contextmanager
def running_app(env: dict[str, str]):
    output: list[str] = []
    proc, lines = spawn(env)
    try:
        wait_until_serving(proc, lines, output)
        yield output
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        while not lines.empty():
            output.append(lines.get())


def test_the_key_is_in_no_page_api_answer_error_or_log(fake_server: FakeOpenAI):
    fake_server.reset()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url,
                            "CHAT_MODEL": "fake-model", "CHAT_MAX_RETRIES": "0"}  # fmt: skip
    seen: list[str] = []
    with running_app(env) as logs:
        for path in ("", "config", "gradio_api/info", "gradio_api/openapi.json", "theme.css"):
            seen.append(httpx.get(url + path, timeout=10).text)
        client = Client(url, verbose=False)
        seen.append(ask(client, "hello"))
        # Providers that echo the key back in their errors, before and during a stream.
        fake_server.enqueue(
            Reply(status=401, error_message=f"Incorrect API key provided: {SENTINEL_KEY}"),
            Reply(status=400, error_message=f"bad header Authorization: Bearer {SENTINEL_KEY}"),
            Reply(fault="error_event", error_message=f"upstream rejected {SENTINEL_KEY}", text="a b c d"),
            Reply(status=500),
            Reply(fault="bad_json", text="a b c d"),
        )
        for turn in range(5):
            seen.append(ask(client, f"turn {turn}"))
        assert fake_server.chat_requests[-1].headers["authorization"] == f"Bearer {SENTINEL_KEY}"  # it was used
    seen += logs
    assert any("refused the API key" in text for text in seen)
    assert any("[redacted]" in text for text in seen)  # an echoed key was caught, not just absent
    assert [text for text in seen if SENTINEL_KEY in text] == []


def test_login_is_required_when_auth_is_set(fake_server: FakeOpenAI):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = base_env(port) | {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server.base_url,
                            "CHAT_MODEL": "fake-model", "CHAT_AUTH": "alice:wonderland-42"}  # fmt: skip
    with running_app(env) as logs:
        assert httpx.get(url + "config", timeout=10).status_code == 401
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(url, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):  # Gradio refuses the wrong password
            Client(url, auth=("alice", "wrong"), verbose=False)
        assert ask(Client(url, auth=("alice", "wonderland-42"), verbose=False), "hi") == "Echo: hi"
    assert not [line for line in logs if "wonderland-42" in line]
