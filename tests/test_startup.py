"""`python app.py` as a user runs it: the startup line, then a working chat."""

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client

from providers.local import default_gguf
from tests.conftest import SENTINEL_KEY
from tests.fake_openai import FakeOpenAI
from tests.support import ask, free_port

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


def base_env(port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_PORT": str(port),
    }


@pytest.mark.parametrize("provider", ["openai-compatible", "local"])
def test_python_app_py_starts_and_chats(provider: str, fake_server: FakeOpenAI):
    fake_server.reset()
    port = free_port()
    env = base_env(port)
    if provider == "local":
        expected = f"Provider: local | model: SmolLM2-135M-Instruct.Q4_1 | runs in this process: {default_gguf()}"
    else:
        env |= {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url, "CHAT_MODEL": "fake-model"}
        expected = f"Provider: openai | model: fake-model | URL: {fake_server.base_url}"
    output: list[str] = []
    proc, lines = spawn(env)
    try:
        wait_until_serving(proc, lines, output)
        assert expected + "\n" in output
        reply = ask(Client(f"http://127.0.0.1:{port}/", verbose=False), "Hi!")
        assert reply.strip()
        if provider != "local":
            assert reply == "Echo: Hi!"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    while not lines.empty():
        output.append(lines.get())
    assert SENTINEL_KEY not in "".join(output)
    assert "Traceback" not in "".join(output)  # e.g. a client of the startup check closed in the wrong loop
    if provider != "local":
        assert "  ✓ Model: fake-model is listed\n" in output  # the short check at startup
