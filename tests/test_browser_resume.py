"""A reply outlives the page showing it: reload, a dropped connection or a closed tab leave it running on the
server, and the page shows it again, continuing, from the same upstream request; Stop still stops it.
In Debian's chromium through Playwright, each browser context a visitor with their own owner cookie."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.browser import Chat, browser, expect  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI, Reply

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
        other.page.wait_for_timeout(1000)  # the page's load event has run
        expect(other.users).to_have_count(0)
        expect(other.bots).to_have_count(0)
    finally:
        other.close()
    expect(chat.bots.last).to_have_text(SLOW)
