"""A reply outlives the page showing it: reload, a dropped connection or a closed tab leave it running on the
server, and the page shows it again, continuing, from the same upstream request; Stop still stops it.
In Debian's chromium through Playwright, each browser context a visitor with their own owner cookie."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from testkit.browser import Chat, browser, cut_reply_retried, expect  # noqa: F401 - fixtures used here
from testkit.cutting_proxy import CuttingProxy
from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.processes import ROOT, app_running, base_env, free_port
from testkit.support import SENTINEL_KEY, wait_for_line

SLOW = "Hello there! " + " ".join(f"word{i}" for i in range(80))  # 4 s


@pytest.fixture
def chat(browser, app_url: str, server: FakeOpenAI) -> Iterator[Chat]:
    tab = Chat(browser, app_url, watch_requests=False)
    yield tab
    tab.close()


def test_a_reload_mid_reply_shows_the_conversation_and_the_reply_continuing(chat: Chat, server: FakeOpenAI):
    server.default = Reply(text=SLOW, delay=0.05)
    chat.send("Talk slowly")
    expect(chat.bots.last).to_contain_text("word3")
    chat.page.reload()
    expect(chat.users).to_have_text(["Talk slowly"])  # how soon: bench/ measures it (speed is not asserted here)
    expect(chat.bots.last).to_contain_text("word")
    assert chat.bots.last.inner_text().strip() != SLOW  # still streaming
    expect(chat.bots.last).to_have_text(SLOW)  # exactly what the provider sent
    assert len(server.chat_requests) == 1 and not server.closed_early  # from one upstream request


def test_a_connection_lost_for_10_s_mid_reply_shows_the_reply_continuing_once_back(
    browser, app_url: str, server: FakeOpenAI
):
    """The browser goes offline and every connection to the app is cut (Chromium's emulation alone leaves a
    loopback stream open). Gradio's page tries to reconnect every 2 s and reloads once it can; the reload
    shows the reply going on, from the same upstream request."""
    long = "Hello there! " + " ".join(f"word{i}" for i in range(400))  # 20 s
    server.default = Reply(text=long, delay=0.05)
    with CuttingProxy(urlsplit(app_url).port or 80) as proxy:
        tab = Chat(browser, proxy.url, watch_requests=False)
        try:
            tab.send("Talk while I am away")
            expect(tab.bots.last).to_contain_text("word3")
            tab.page.context.set_offline(True)
            proxy.cut()
            tab.page.wait_for_timeout(10_000)
            away = len(tab.bots.last.inner_text().split())
            proxy.restore()
            tab.page.context.set_offline(False)
            expect(tab.users).to_have_text(["Talk while I am away"])
            expect(tab.bots.last).to_contain_text(f"word{away + 20}", timeout=10_000)  # it went on meanwhile
            assert tab.bots.last.inner_text().strip() != long  # and is still streaming
            expect(tab.bots.last).to_have_text(long, timeout=20_000)
            assert len(server.chat_requests) == 1 and not server.closed_early
        finally:
            tab.close()


def test_visitors_reloading_at_once_each_see_their_reply(chat: Chat, browser, app_url: str, server: FakeOpenAI):
    long = "Hello there! " + " ".join(f"word{i}" for i in range(300))  # 15 s
    server.default = Reply(text=long, delay=0.05)
    other = Chat(browser, app_url, watch_requests=False)
    try:
        for tab, message in ((chat, "Mine"), (other, "Theirs")):
            tab.send(message)
            expect(tab.bots.last).to_contain_text("word3")
        for tab in (chat, other):
            tab.page.reload()
        for tab, message in ((chat, "Mine"), (other, "Theirs")):  # neither waits for the other's reply to end
            expect(tab.users).to_have_text([message])
            expect(tab.bots.last).to_contain_text("word")
            assert tab.bots.last.inner_text().strip() != long
        for tab in (chat, other):
            tab.page.get_by_role("button", name="Stop").click()
    finally:
        other.close()


def test_stop_after_a_reload_stops_the_reply_and_the_chat_goes_on(chat: Chat, server: FakeOpenAI):
    slow = "Hello there! " + " ".join(f"word{i}" for i in range(600))  # a minute
    server.default = Reply(text=slow, delay=0.1)
    chat.send("Talk slowly")
    expect(chat.bots.last).to_contain_text("word3")
    chat.page.reload()
    expect(chat.bots.last).to_contain_text("word5")
    chat.page.get_by_role("button", name="Stop").click()
    assert server.wait_for(lambda: server.closed_early, timeout=1.0), "Stop left the upstream stream open"
    expect(chat.textbox).to_be_editable()
    partial = chat.bots.last.inner_text().strip()
    chat.page.wait_for_timeout(500)
    expect(chat.bots.last).to_have_text(partial)  # nothing more arrives
    assert slow.startswith(partial) and len(partial) < len(slow)

    server.default = Reply()
    chat.send("Are you there?")
    expect(chat.bots.last).to_have_text("Echo: Are you there?")
    sent = server.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"] == partial  # the conversation the page has is the one the server keeps


def test_a_closed_tab_leaves_the_reply_to_finish_and_it_is_there_on_return(chat: Chat, server: FakeOpenAI):
    server.default = Reply(text=SLOW, delay=0.02)
    chat.send("Finish without me")
    expect(chat.bots.last).to_contain_text("word3")
    chat.page.close()
    assert server.wait_for(lambda: server.streams_completed == 1, timeout=10)
    assert not server.closed_early
    chat.open()
    expect(chat.users).to_have_text(["Finish without me"])
    expect(chat.bots.first).to_have_text(SLOW)
    expect(chat.textbox).to_be_editable()


def test_another_visitor_sees_nothing_of_a_conversation(chat: Chat, browser, app_url: str, server: FakeOpenAI):
    server.default = Reply(text=SLOW, delay=0.05)
    chat.send("Only mine")
    expect(chat.bots.last).to_contain_text("word3")
    other = Chat(browser, app_url, watch_requests=False)  # another browser: its own owner cookie
    try:
        other.page.wait_for_timeout(1000)  # nothing arrives later either
        expect(other.users).to_have_count(0)
        expect(other.bots).to_have_count(0)
    finally:
        other.close()
    expect(chat.bots.last).to_have_text(SLOW)


@contextlib.contextmanager
def app_process(env: dict[str, str], *flags: str) -> Iterator[subprocess.Popen]:
    """`python app.py` as a user runs it, no flag for the store; ended (by its id) when the block ends."""
    with app_running(env, "--model", "fake-model", "--rate-limit", "0", *flags) as (proc, seen):
        assert f"Conversations are kept in {env['XDG_DATA_HOME']}/streaming-chat/chats.db (SQLite)." in "".join(seen)
        yield proc


def test_after_a_restart_the_conversation_is_there_and_a_cut_reply_says_so_and_retries(
    browser, fake_server: FakeOpenAI
):
    """The store is on by default: `python app.py` keeps conversations in the user's data folder."""
    fake_server.reset()
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    with app_process(env):
        tab = Chat(browser, f"http://127.0.0.1:{port}/", watch_requests=False)
        tab.send("first")
        expect(tab.bots.last).to_have_text("Echo: first")
        tab.wait_for_reply()
    with app_process(env) as proc:  # a restart: the finished turn is there
        tab.page.reload()
        expect(tab.users).to_have_text(["first"])
        expect(tab.bots).to_have_text(["Echo: first"])
        fake_server.default = Reply(text="Hello there! " + " ".join(f"word{i}" for i in range(200)), delay=0.05)
        tab.send("second, cut")
        expect(tab.bots.last).to_contain_text("word60")  # 3 s in: past a save (every 2 s), 7 s before the end
        proc.send_signal(signal.SIGKILL)  # the process dies mid-reply
    with app_process(env):
        tab.page.reload()
        expect(tab.users).to_have_text(["first", "second, cut"])
        cut_reply_retried(tab, fake_server, ["first", "Echo: first", "second, cut"], "Hello there! word0 word1")
        tab.close()


def test_ctrl_c_mid_reply_keeps_every_word_the_tab_showed_as_interrupted(browser, fake_server: FakeOpenAI):
    """Ctrl-C (SIGTERM the same) while a tab watches a reply: the app exits 0 and keeps the reply with all it had
    shown, not only what its last save (every 2 s) had, marked interrupted; started again, Retry asks again."""
    fake_server.reset()
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    with app_process(env) as proc:
        tab = Chat(browser, f"http://127.0.0.1:{port}/", watch_requests=False)
        fake_server.default = Reply(text="Hello there! " + " ".join(f"word{i}" for i in range(200)), delay=0.05)
        tab.send("talk, then be cut")
        expect(tab.bots.last).to_contain_text("word50")  # 2.5 s in: half a save's interval since the last one
        shown = tab.bots.last.inner_text().strip()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    with app_process(env):
        tab.page.reload()
        expect(tab.users).to_have_text(["talk, then be cut"])
        cut_reply_retried(tab, fake_server, ["talk, then be cut"], shown)
        tab.close()


def test_tool_steps_and_a_call_waiting_for_run_outlive_a_reload_and_a_restart(
    browser, fake_server: FakeOpenAI, tmp_path: Path
):
    """A reload while a tool runs shows it running; a reload and then a restart while a call waits for Run
    show it waiting, and Run runs it; after another restart a follow-up still sends the tool's result."""
    fake_server.reset()
    port, tool_log, mcp_file = free_port(), tmp_path / "calls.log", tmp_path / "mcp.json"
    server = {"command": sys.executable, "args": ["-m", "testkit.mcp_tools_server"], "cwd": str(ROOT)}
    servers = {"test": server, "careful": {**server, "approve": True}}
    mcp_file.write_text(json.dumps({"mcpServers": {name: {**spec, "env": {"MCP_TEST_LOG": str(tool_log)}}
                                                   for name, spec in servers.items()}}))  # fmt: skip
    tool_log.write_text("")
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    flags = ("--mcp", str(mcp_file))
    url = f"http://127.0.0.1:{port}/"
    with app_process(env, *flags):
        tab = Chat(browser, url, watch_requests=False)
        fake_server.enqueue(Reply(tool_calls=[ToolCall("sleep", '{"seconds": 3}', "s")]), Reply(text="Slept."))
        tab.send("Sleep a while")
        assert wait_for_line(tool_log, "sleep 3.0 start")
        tab.page.reload()  # mid-call: the step shows running, then its result and the answer
        running = tab.folded("Tool: sleep")
        expect(running.locator(".loading-spinner, .spinner, [class*=spinner]").first).to_be_visible(timeout=2_000)
        expect(running).to_contain_text('"seconds": 3')
        expect(tab.bots.last).to_have_text("Slept.", timeout=10_000)
        fake_server.enqueue(Reply(tool_calls=[ToolCall("careful__echo", '{"text": "approved"}', "e")]))
        tab.send("Echo carefully")
        expect(tab.folded("Tool: careful__echo")).to_contain_text("waiting for your approval")
        tab.wait_for_reply()
        tab.page.reload()
        expect(tab.folded("Tool: careful__echo")).to_contain_text("waiting for your approval")
        expect(tab.page.get_by_role("button", name="Run", exact=True)).to_be_visible()
    with app_process(env, *flags):  # a restart while the call waits
        tab.page.reload()
        expect(tab.folded("Tool: careful__echo")).to_contain_text("waiting for your approval")
        fake_server.enqueue(Reply(text="All done."))
        tab.page.get_by_role("button", name="Run", exact=True).click()
        expect(tab.bots.last).to_have_text("All done.")
        assert "echo approved" in tool_log.read_text().splitlines()
    with app_process(env, *flags):  # another restart: the follow-up sends both results back
        tab.page.reload()
        expect(tab.bots.last).to_have_text("All done.")
        tab.send("What did the tools say?")
        expect(tab.bots.last).to_have_text("Echo: What did the tools say?")
        sent = fake_server.chat_requests[-1].body["messages"]
        assert [(m["tool_call_id"], m["content"]) for m in sent if m["role"] == "tool"] == [
            ("s", "slept 3.0 s"),
            ("e", "approved"),
        ]
        tab.close()
