"""`python app.py` as a user runs it: the startup line, then a working chat."""

import contextlib
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from providers.local import default_gguf
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.processes import base_env, free_port, spawn, wait_until_serving
from testkit.support import SENTINEL_KEY, ask, submit


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


def rest_of(proc: subprocess.Popen, lines: queue.Queue[str], output: list[str]) -> str:
    """Everything the app printed, once it has ended; a failure showing where each of its threads was, if it
    has not ended within 30 s (spawn() turns Python's fault handler on: SIGABRT prints them)."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=10)
        pytest.fail(f"still running 30 s later; its threads, as SIGABRT found them:\n{rest_of(proc, lines, output)}")
    time.sleep(0.2)  # the reader thread hands over the last lines
    while not lines.empty():
        output.append(lines.get())
    return "".join(output)


def test_a_port_in_use_is_one_sentence_and_exit_1(fake_server: FakeOpenAI):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(port) | {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server.base_url}
        proc, lines = spawn(env, "--model", "fake-model", "--port", str(port))  # without --port Gradio tries the next
        try:
            printed = rest_of(proc, lines, [])
        finally:  # had it started after all, it must not outlive the test
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, printed
    assert (
        printed.splitlines()[-1] == f"Error: Port {port} is already in use: stop what listens there, or pass --port N."
    )
    assert "Traceback" not in printed


def held_open(url: str) -> None:
    """A stream kept open, as a tab keeps its heartbeat, until the server ends it."""
    with contextlib.suppress(httpx.HTTPError), httpx.stream("GET", url, timeout=60) as response:
        for _ in response.iter_lines():
            pass


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_mid_reply_exits_0_with_no_traceback(
    stop: signal.Signals, fake_server: FakeOpenAI, tmp_path: Path
):
    """With a client connected (its heartbeat stream open) and a reply streaming to it, and a tab open on each
    workbench page, the app exits, cleanly (Gradio's own Ctrl-C waited 5 s for the open streams, then exited
    under a running event loop; a stream still open after STOP_GRACE_SECONDS is cut, with a traceback)."""
    fake_server.reset()
    fake_server.default = Reply(tokens=[f"word{i} " for i in range(400)], delay=0.05)  # 20 s
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server.base_url}
    output: list[str] = []
    proc, lines = spawn(env, "--model", "fake-model", "--log-db", str(tmp_path / "chats.db"))
    try:
        wait_until_serving(proc, lines, output)
        for page in ("review", "compare"):
            url = f"http://127.0.0.1:{port}/{page}/gradio_api/heartbeat/tab-of-{page}"
            threading.Thread(target=held_open, args=(url,), daemon=True).start()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        reply = submit(client, "Talk slowly")
        while "word3 " not in str(reply.outputs()[-1:]):
            assert not reply.done(), reply.outputs()
            time.sleep(0.05)
        proc.send_signal(stop)
        printed = rest_of(proc, lines, output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, printed
    assert "Traceback" not in printed and "CancelledError" not in printed, printed
    assert "word399" not in str(reply.outputs()), "the reply was not cut"


STUCK_SERVER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a server that ignores SIGTERM, with a child, and never answers
child = subprocess.Popen(["sleep", "300"])
open(sys.argv[1], "w").write(f"{child.pid}")
time.sleep(300)
"""


def test_sigterm_while_the_mcp_servers_start_stops_them_and_their_children(tmp_path: Path, fake_server: FakeOpenAI):
    (tmp_path / "stuck.py").write_text(STUCK_SERVER)
    pids = tmp_path / "pids"
    mcp = tmp_path / "mcp.json"
    mcp.write_text(
        json.dumps(
            {"mcpServers": {"stuck": {"command": sys.executable, "args": [str(tmp_path / "stuck.py"), str(pids)]}}}
        )
    )
    env = base_env(free_port()) | {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server.base_url}
    proc, lines = spawn(env, "--model", "fake-model", "--mcp", str(mcp))
    try:
        deadline = time.monotonic() + 30
        while not pids.exists() or not pids.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        child = int(pids.read_text())
        proc.send_signal(signal.SIGTERM)  # while the app waits for the server to list its tools
        printed = rest_of(proc, lines, [])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, printed
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "zombie" not in Path(f"/proc/{child}/status").read_text().lower():
        assert time.monotonic() < deadline, "the MCP server's child outlived the app"
        time.sleep(0.1)
