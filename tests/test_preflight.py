"""`python app.py --check`: a plain-language diagnosis of the configuration, and its exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testkit.fake_openai import FakeOpenAI, Reply
from testkit.processes import ROOT, base_env, free_port, spawn, wait_until_serving
from testkit.support import SENTINEL_KEY


def check(server: FakeOpenAI | None, *flags: str, base_url: str | None = None) -> tuple[int, str]:
    """Run the preflight as a user would; returns (exit code, output)."""
    env = base_env(free_port())
    if server or base_url:
        env |= {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": base_url or server.base_url, "CHAT_MAX_RETRIES": "0"}
    result = subprocess.run(
        [sys.executable, "app.py", "--check", *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert SENTINEL_KEY not in output
    return result.returncode, output


def test_a_healthy_provider_passes_every_check(server: FakeOpenAI):
    code, output = check(server, "--model", "fake-model")
    assert code == 0, output
    assert f"Checking openai ({server.base_url}), model fake-model:" in output
    assert "✓ Reachable: " in output and "key from OPENAI_API_KEY accepted; 2 models listed" in output
    assert "✓ Model: fake-model is listed" in output
    assert "✓ Streaming: first token after " in output and "finish reason stop" in output
    assert "✓ Usage: reported (" in output
    assert "All checks passed." in output
    assert server.chat_requests[-1].body["max_tokens"] == 16  # a probe, not a conversation


def test_models_the_provider_does_not_list_are_named_and_left_out_of_the_picker(server: FakeOpenAI):
    code, output = check(server, "--model", "fake-model", "--models", "fake-model-2,gpt-huge")
    assert code == 0, output
    assert "! Model picker: not listed by the provider, so left out: gpt-huge" in output


def test_no_usage_is_a_warning_not_a_failure(server: FakeOpenAI):
    server.default = Reply(usage=False)
    code, output = check(server, "--model", "fake-model")
    assert code == 0, output
    assert "! Usage: not reported; token counts under each reply are estimates, marked ≈" in output


def test_a_model_the_server_does_not_list_but_serves_is_a_warning_and_the_check_passes(server: FakeOpenAI):
    """llama.cpp's own server lists only its GGUF path and answers to any model name."""
    code, output = check(server, "--model", "default")
    assert code == 0, output
    assert "  ! Model: default is not among the models listed (fake-model, fake-model-2); some servers " in output
    assert "✓ Streaming: " in output and "All checks passed." in output


@pytest.mark.parametrize(
    ("reply", "model", "diagnosis"),
    [
        (
            Reply(status=404, error_message="The model no-such-model does not exist"),  # as OpenAI answers
            "no-such-model",
            "✗ Streaming: The model no-such-model was not found at http://127.0.0.1:",
        ),
        (
            Reply(status=401),  # the listing worked, the chat did not
            "fake-model",
            "✗ Streaming: The provider refused the API key (401 Unauthorized). Check OPENAI_API_KEY.",
        ),
        (
            Reply(fault="truncate"),
            "fake-model",
            "✗ Streaming: The provider's stream ended without saying it was finished.",
        ),
    ],
    ids=["unknown-model", "chat-refused", "stream-ends-early"],
)
def test_each_failure_is_named_with_its_fix_and_exits_1(server: FakeOpenAI, reply, model, diagnosis):
    if reply:
        server.default = reply
    code, output = check(server, "--model", model)
    assert code == 1, output
    assert diagnosis in output, output
    assert "1 problem(s): fix them and run again." in output


def test_a_refused_key_on_listing_stops_the_checks(server: FakeOpenAI):
    server.models_status = 401
    code, output = check(server, "--model", "fake-model")
    assert code == 1
    assert "✗ Key: The provider refused the API key (401 Unauthorized). Check OPENAI_API_KEY." in output
    assert "Streaming" not in output and server.chat_requests == []


def test_an_unreachable_server_says_where_it_looked():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    code, output = check(None, "--model", "m", base_url=url)
    assert code == 1
    assert f"✗ Reachable: Could not connect to the provider at {url}." in output
    assert "Check that it is running and the URL is right." in output


def test_a_server_that_lists_no_models_is_warned_about_and_still_checked(server: FakeOpenAI):
    server.models_status = 404
    code, output = check(server, "--model", "fake-model")
    assert code == 0, output
    assert "! Reachable: " in output and "lists no models (404 on /models)" in output
    assert "✓ Streaming" in output


def test_the_embedded_model_checks_its_file_and_generation():
    code, output = check(None)
    assert code == 0, output
    assert "✓ Loaded: SmolLM2-135M-Instruct.Q4_1, in this process, in " in output
    assert "✓ Streaming" in output and "✓ Usage: reported (" in output


def test_startup_prints_the_short_check_and_serves_even_when_the_provider_is_down():
    port = free_port()
    url = f"http://127.0.0.1:{free_port()}/v1"
    env = base_env(port) | {"OPENAI_BASE_URL": url, "CHAT_MODEL": "m"}
    proc, lines = spawn(env)
    seen: list[str] = []
    try:
        wait_until_serving(proc, lines, seen)  # it starts anyway: the provider may come up later
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    output = "".join(seen)
    assert f"✗ Reachable: Could not connect to the provider at {url}." in output
