"""Tool calls in a real Chromium: steps appear and fold, Stop mid-tool, approval, a follow-up.

Uses the browser and chat tab of testkit/browser.py; MCP servers: testkit/mcp_tools_server.py twice
(one needing approval) and the reference mcp-server-time.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testkit.browser import Chat, browser, expect, screenshots  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.support import launched, remote_settings, stdio_server, wait_for_line
from tools.hub import ToolHub
from tools.servers import ServerSpec


@pytest.fixture(scope="module")
def tool_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-mcp") / "calls.log"


@contextmanager
def app_with(fake_server: FakeOpenAI, *specs: ServerSpec) -> Iterator[str]:
    hub = ToolHub(specs, timeout=30)
    hub.start()
    try:
        with launched(remote_settings(fake_server), hub=hub) as url:
            yield url
    finally:
        hub.close()


@pytest.fixture(scope="module")
def tools_url(fake_server: FakeOpenAI, tool_log: Path) -> Iterator[str]:
    with app_with(fake_server, stdio_server(tool_log), stdio_server(tool_log, "careful", approve=True)) as url:
        yield url


@pytest.fixture(scope="module")
def time_url(fake_server: FakeOpenAI) -> Iterator[str]:
    """The README's example: the reference time server only."""
    time = ServerSpec("time", command=sys.executable, args=("-m", "mcp_server_time", "--local-timezone", "UTC"))
    with app_with(fake_server, time) as url:
        yield url


def open_tab(chromium, url: str) -> Iterator[Chat]:
    tab = Chat(chromium, url)
    yield tab
    tab.close()
    assert tab.external_requests == [] and tab.console_errors == []


@pytest.fixture
def chat(browser, tools_url: str, server: FakeOpenAI, tool_log: Path) -> Iterator[Chat]:
    tool_log.write_text("")
    yield from open_tab(browser, tools_url)


@pytest.fixture
def time_chat(browser, time_url: str, server: FakeOpenAI) -> Iterator[Chat]:
    yield from open_tab(browser, time_url)


def steps(chat: Chat, name: str):
    return chat.folded(f"Tool: {name}")


def wait_until_done(chat: Chat) -> None:
    expect(chat.textbox).to_be_editable(timeout=30_000)


def test_steps_appear_fold_and_open_and_a_follow_up_carries_the_result(
    time_chat: Chat,
    server: FakeOpenAI,
    screenshots: Path,
):
    chat = time_chat
    tools_line = chat.page.locator("p", has_text="Tools this chat can use:")
    expect(tools_line).to_have_text("Tools this chat can use: get_current_time, convert_time.")
    server.enqueue(
        Reply(
            text="Let me look up both clocks.",
            tool_calls=[
                ToolCall("get_current_time", '{"timezone": "Asia/Tokyo"}', "tokyo"),
                ToolCall("get_current_time", '{"timezone": "Europe/Lisbon"}', "lisbon"),
            ],
        ),
        Reply(text="Tokyo is 9 hours ahead of Lisbon; the exact times are in the two steps above.", delay=0.02),
    )
    chat.send("What time is it in Tokyo and in Lisbon?")
    expect(chat.page.get_by_text("Tokyo is 9 hours ahead of Lisbon", exact=False)).to_be_visible(timeout=15_000)
    wait_until_done(chat)
    expect(steps(chat, "get_current_time")).to_have_count(2)
    tokyo = steps(chat, "get_current_time").first
    expect(tokyo).not_to_contain_text('"datetime"')  # folded once done
    tokyo.get_by_text("Tool: get_current_time").click()
    expect(tokyo).to_contain_text('"timezone": "Asia/Tokyo"')  # and opened by a click
    expect(chat.folded("Stats").last).to_contain_text("2 steps")
    chat.page.set_viewport_size({"width": 1100, "height": 1250})  # the whole turn in view
    chat.page.wait_for_timeout(500)  # the fold opens with an animation
    chat.page.screenshot(path=screenshots / "tools.png", full_page=True)

    server.enqueue(Reply(text="It was the Tokyo time."))
    chat.send("Which one did you look up first?")
    expect(chat.page.get_by_text("It was the Tokyo time.")).to_be_visible()
    sent = server.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert '"timezone": "Asia/Tokyo"' in sent[3]["content"]


def test_a_running_step_is_open_with_a_spinner_and_stop_cancels_the_call(chat: Chat, server: FakeOpenAI, tool_log):
    server.enqueue(Reply(text="Sleeping now.", tool_calls=[ToolCall("sleep", '{"seconds": 20}', "s")]))
    chat.send("Sleep")
    running = steps(chat, "sleep")
    expect(running).to_contain_text('"seconds": 20')  # open while it runs
    expect(running.locator(".loading-spinner, .spinner, [class*=spinner]").first).to_be_visible()
    assert wait_for_line(tool_log, "sleep 20.0 start")
    chat.page.get_by_role("button", name="Stop").click()
    assert wait_for_line(tool_log, "sleep 20.0 cancelled"), "Stop did not cancel the MCP call"
    wait_until_done(chat)
    expect(chat.page.get_by_text("Sleeping now.")).to_be_visible()  # what was on screen stays
    expect(steps(chat, "sleep")).to_have_count(1)

    server.enqueue(Reply(text="Awake again."))
    chat.send("Still there?")
    expect(chat.page.get_by_text("Awake again.")).to_be_visible()
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize("button", ["Run", "Skip"])
def test_a_call_needing_approval_waits_for_the_button(chat: Chat, server: FakeOpenAI, tool_log, button: str):
    server.enqueue(
        Reply(text="I need to echo this.", tool_calls=[ToolCall("careful__echo", '{"text": "with care"}', "c")]),
        Reply(text="All done."),
    )
    chat.send("Echo carefully")
    expect(steps(chat, "careful__echo")).to_contain_text("waiting for your approval")
    wait_until_done(chat)
    assert tool_log.read_text() == ""  # nothing ran yet
    chat.page.get_by_role("button", name=button, exact=True).click()
    expect(chat.users.last).to_have_text(button)
    expect(chat.page.get_by_text("All done.")).to_be_visible()
    if button == "Run":
        assert tool_log.read_text() == "echo with care\n"
        result = re.compile(r"Result:\s*```\s*with care", re.S)  # folded: its result is in its label
        expect(steps(chat, "careful__echo").last).to_have_attribute("aria-label", result)
    else:
        assert tool_log.read_text() == ""
        expect(steps(chat, "careful__echo").last).to_contain_text("skipped")
