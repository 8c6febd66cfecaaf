"""The --mcp file, MCP servers over streamable HTTP, and `python app.py --mcp` as a user runs it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.processes import ROOT, base_env, free_port, spawn, wait_until_serving
from testkit.support import SENTINEL_KEY, answer_text, launched, remote_settings
from tools.hub import ToolHub
from tools.servers import load_servers

TOKEN = "mcp-token-0123456789abcdef"


def write(tmp_path: Path, servers: dict) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def test_the_file_takes_variables_from_the_environment(tmp_path: Path):
    path = write(
        tmp_path,
        {
            "local": {"command": "tool-${NAME}", "args": ["--dir", "${HOME}"], "env": {"KEY": "${KEY}"}, "cwd": "/tmp"},
            "web": {"url": "https://example.test/mcp", "headers": {"Authorization": "Bearer ${KEY}"}, "approve": True},
        },
    )
    local, web = load_servers(path, {"NAME": "x", "HOME": "/home/a", "KEY": "k-123"})
    assert (local.command, local.args, dict(local.env), local.cwd) == (
        "tool-x",
        ("--dir", "/home/a"),
        {"KEY": "k-123"},
        "/tmp",
    )
    assert (web.url, dict(web.headers), web.approve) == (
        "https://example.test/mcp",
        {"Authorization": "Bearer k-123"},
        True,
    )
    assert "k-123" in web.secrets and "k-123" not in repr(web) + repr(local)


@pytest.mark.parametrize(
    ("servers", "says"),
    [
        (
            {"a": {"command": "x", "env": {"K": "${UNSET_VAR}"}}},
            "server 'a': env.K uses ${UNSET_VAR}, which is not set",
        ),
        ({"a": {"command": "x", "url": "http://h"}}, "give either a command (stdio) or a url (streamable HTTP)"),
        ({"a": {}}, "give either a command (stdio) or a url"),
        ({"a": {"url": "ftp://h"}}, "url must start with http:// or https://"),
        ({"a": {"command": "x", "args": "y"}}, "args must be a list of strings"),
        ({"a": {"command": "x", "approve": "yes"}}, "approve must be true or false"),
    ],
)
def test_a_bad_file_is_one_sentence(tmp_path: Path, servers: dict, says: str):
    with pytest.raises(ValueError, match=re.escape(says)):
        load_servers(write(tmp_path, servers), {})


def test_a_file_that_is_not_an_mcp_servers_file(tmp_path: Path):
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_servers(tmp_path / "bad.json", {})
    (tmp_path / "bad.json").write_text('{"servers": {}}')
    with pytest.raises(ValueError, match='needs an object "mcpServers"'):
        load_servers(tmp_path / "bad.json", {})


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """testkit/mcp_tools_server.py over streamable HTTP on loopback, requiring a token."""
    port = free_port()
    env = {**os.environ, "MCP_TEST_TOKEN": TOKEN, "MCP_TEST_LOG": str(tmp_path / "http.log")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.mcp_tools_server", "--http", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert time.monotonic() < deadline and proc.poll() is None, "the HTTP MCP server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_streamable_http_server_gets_its_headers_and_a_wrong_token_is_reported(tmp_path: Path, http_server: str):
    servers = {
        "web": {"url": http_server, "headers": {"Authorization": "Bearer ${MCP_TOKEN}"}},
        "wrong": {"url": http_server, "headers": {"Authorization": "Bearer not-the-token"}},
    }
    specs = load_servers(write(tmp_path, servers), {"MCP_TOKEN": TOKEN})
    hub = ToolHub(specs)
    try:
        status = {s.name: s for s in hub.start()}
        assert status["web"].error is None and "echo" in status["web"].tools
        assert status["wrong"].error == "it answered HTTP 401 (check its headers)"
        result = asyncio.run(hub.call("echo", json.dumps({"text": f"over http with {TOKEN}"})))
        assert (result.text, result.is_error) == ("over http with [redacted]", False)
    finally:
        hub.close()


def tool_processes(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            if int(fields.get("PPid", "0")) == pid:
                children.append(int(status.parent.name))
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def test_python_app_py_with_the_readme_mcp_file_answers_with_the_time_and_stops_its_server(fake_server: FakeOpenAI):
    fake_server.reset()
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    output: list[str] = []
    proc, lines = spawn(env | {"CHAT_MODEL": "fake-model"}, "--mcp", "examples/mcp.json")
    try:
        wait_until_serving(proc, lines, output)
        assert "  ✓ MCP server time: get_current_time, convert_time\n" in output
        [server_pid] = tool_processes(proc.pid)
        fake_server.enqueue(
            Reply(text="", tool_calls=[ToolCall("get_current_time", '{"timezone": "UTC"}')]),
            Reply(text="It is morning somewhere."),
        )
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        final = client.predict({"text": "What time is it?", "files": []}, api_name="/chat")
        [step] = [m for m in final if (m.get("metadata") or {}).get("title") == "Tool: get_current_time"]
        assert '"timezone": "UTC"' in step["content"] and '"datetime": "' in step["content"]
        assert answer_text(final) == "It is morning somewhere."
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not alive(server_pid), "the MCP server outlived the app"
    assert "Traceback" not in "".join(output)


def test_startup_prints_where_the_mcp_endpoint_is_and_it_answers_there(fake_server: FakeOpenAI):
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    output: list[str] = []
    proc, lines = spawn(env | {"CHAT_MODEL": "fake-model"}, "--mcp-server")
    try:
        wait_until_serving(proc, lines, output)
        deadline = time.monotonic() + 10
        while not any(line.startswith("MCP endpoint") for line in output):
            assert time.monotonic() < deadline, "".join(output)
            with contextlib.suppress(queue.Empty):
                output.append(lines.get(timeout=1))
        [line] = [line for line in output if line.startswith("MCP endpoint")]
        assert line == f"MCP endpoint (streamable HTTP) for other agents: http://127.0.0.1:{port}/mcp/\n"
        _, text, failed = asyncio.run(call_chat(line.split(": ", 1)[1].strip(), message="hi"))
        assert (text, failed) == ("Echo: hi", False)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_server_that_dies_at_startup_is_named_with_its_last_words_and_python_is_the_apps_own(
    tmp_path: Path, fake_server: FakeOpenAI
):
    dies = tmp_path / "dies.py"
    dies.write_text("raise AttributeError(\"'Server' object has no attribute 'list_resources'\")\n")
    wrong = tmp_path / "bin" / "python"  # the PATH's python is another one, without the app's packages
    wrong.parent.mkdir()
    wrong.write_text("#!/bin/sh\necho 'not the app python' >&2\nexit 1\n")
    wrong.chmod(0o755)
    mcp = write(
        tmp_path,
        {
            "dies": {"command": "python", "args": [str(dies)]},
            "time": {"command": "python", "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
        },
    )
    env = base_env(free_port()) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    env["PATH"] = f"{wrong.parent}:{env['PATH']}"
    run = subprocess.run(
        [sys.executable, "app.py", "--check", "--model", "fake-model", "--mcp", str(mcp)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "  ✓ MCP server time: get_current_time, convert_time\n" in run.stdout, run.stdout
    [line] = [line for line in run.stdout.splitlines() if "MCP server dies" in line]
    assert line.endswith("it said: AttributeError: 'Server' object has no attribute 'list_resources'"), line
    assert "Traceback" not in run.stdout + run.stderr  # the server's own traceback stays out of the console


def test_check_lists_the_servers_health_and_whether_the_model_takes_tools(tmp_path: Path, fake_server: FakeOpenAI):
    fake_server.reset()
    mcp = write(
        tmp_path,
        {
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
            "broken": {"command": "no-such-mcp-command"},
        },
    )
    env = base_env(free_port()) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}

    def check(*flags: str, environment: dict[str, str] = env) -> subprocess.CompletedProcess:
        command = [sys.executable, "app.py", "--check", *flags, "--mcp", str(mcp)]
        return subprocess.run(
            command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    run = check("--model", "fake-model")
    assert "  ✓ MCP server time: get_current_time, convert_time\n" in run.stdout
    assert "  ✗ MCP server broken: no-such-mcp-command was not found\n" in run.stdout
    assert "  ✓ Tools: fake-model accepts them (2 offered)\n" in run.stdout
    assert run.returncode == 1  # a server is down

    fake_server.refuse_tools = True
    run = check("--model", "fake-model")
    assert "  ! Tools: fake-model refused them (400/422), so it chats without tools\n" in run.stdout

    local = check("--provider", "local", environment=base_env(free_port()))
    unused = "the MCP servers' tools go unused"
    expected = f"  ! Tools: SmolLM2-135M-Instruct.Q4_1's chat template takes no tools; {unused}\n"
    assert expected in local.stdout


async def call_chat(url: str, headers: dict[str, str] | None = None, **arguments) -> tuple[list[str], str, bool]:
    """Through the official SDK, as another agent would: the tools listed, and the chat tool's answer."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=headers or {}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        listed = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("chat", arguments)
        return listed, result.content[0].text, bool(result.is_error)


def test_mcp_server_lets_another_agent_call_the_chat(fake_server: FakeOpenAI):
    fake_server.reset()
    settings = remote_settings(fake_server, mcp_server=True)
    with launched(settings) as url:
        listed, text, failed = asyncio.run(call_chat(url + "mcp/", message="hello from an agent"))
        assert (listed, text, failed) == (["chat"], "Echo: hello from an agent", False)
        assert fake_server.chat_requests[-1].body["messages"][0] == {
            "role": "system",
            "content": "You are a helpful assistant.",
        }
        _, text, failed = asyncio.run(call_chat(url + "mcp/", message="hi", system_prompt="Be brief."))
        assert fake_server.chat_requests[-1].body["messages"][0] == {"role": "system", "content": "Be brief."}
        _, text, failed = asyncio.run(call_chat(url + "mcp/", message="   "))
        assert failed and text == "Type a message first."
        _, text, failed = asyncio.run(call_chat(url + "mcp/"))  # no message at all: a sentence, no pydantic dump
        assert failed and text == "chat needs a message: the text to send, as a string."
        fake_server.default = Reply(status=401, error_message=f"bad key {SENTINEL_KEY}")
        _, text, failed = asyncio.run(call_chat(url + "mcp/", message="hi"))
        assert failed and SENTINEL_KEY not in text and "key" in text.lower()


def test_mcp_server_answers_at_mcp_exactly_says_its_version_and_offers_only_its_tool(fake_server: FakeOpenAI):
    """What the Vercel AI SDK's MCP client and the MCP inspector need: no redirect from /mcp, one tool."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from config import VERSION

    async def inspect(url: str):
        async with httpx2.AsyncClient() as http, Client(streamable_http_client(url, http_client=http)) as client:
            return client.server_info, client.server_capabilities, (await client.list_tools()).tools

    with launched(remote_settings(fake_server, mcp_server=True)) as url:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        answered = httpx2.post(url + "mcp", json=initialize, headers={"Accept": "application/json, text/event-stream"})
        assert answered.status_code != 307 and "location" not in answered.headers
        listed, text, failed = asyncio.run(call_chat(url + "mcp", message="no slash"))
        assert (listed, text, failed) == (["chat"], "Echo: no slash", False)
        info, capabilities, [tool] = asyncio.run(inspect(url + "mcp"))
    assert (info.name, info.version) == ("Streaming Chat", VERSION)
    assert capabilities.tools is not None and capabilities.prompts is None and capabilities.resources is None
    assert "Args:" not in tool.description and tool.description.startswith("Send one message to this app's model")
    assert tool.input_schema["required"] == ["message"]


def test_mcp_server_behind_auth_needs_the_login(fake_server: FakeOpenAI):
    fake_server.reset()
    settings = remote_settings(fake_server, mcp_server=True, auth=(("ann", "pw-123"),))
    with launched(settings) as url:
        import httpx2

        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        refused = httpx2.post(url + "mcp/", json=initialize, headers={"Accept": "application/json, text/event-stream"})
        assert (refused.status_code, refused.text) == (401, "This chat needs a login (--auth).")
        wrong = {"Authorization": "Basic " + base64.b64encode(b"ann:wrong").decode()}
        assert httpx2.post(url + "mcp/", json=initialize, headers=wrong).status_code == 401
        login = {"Authorization": "Basic " + base64.b64encode(b"ann:pw-123").decode()}
        _, text, _ = asyncio.run(call_chat(url + "mcp/", login, message="hi"))
        assert text == "Echo: hi"


def test_the_readme_mcp_server_snippet_connects_this_app_to_another_instance(tmp_path: Path, fake_server: FakeOpenAI):
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("### This chat as a tool for other agents", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    fake_server.reset()
    with launched(remote_settings(fake_server, mcp_server=True)) as url:
        mcp = tmp_path / "mcp.json"
        mcp.write_text(snippet.replace("http://127.0.0.1:7860/", url))  # only the address changes
        hub = ToolHub(load_servers(mcp, {}))
        try:
            assert [s.line() for s in hub.start()] == ["✓ MCP server chat: chat"]
            result = asyncio.run(hub.call("chat", '{"message": "hi, other instance"}'))
            assert (result.text, result.is_error) == ("Echo: hi, other instance", False)
        finally:
            hub.close()
