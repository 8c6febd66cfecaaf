"""The conversation list in the sidebar: new chat, open, delete, newest first, kept in the store and never in
the browser; another visitor's never listed. In Debian's chromium through Playwright."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from storage.logs import LogStore, conversations, database_url
from testkit.browser import Chat, browser, expect, screenshots  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.support import launched, remote_settings


def listed(chat: Chat) -> list[str]:
    return chat.page.locator("#conversations label").all_inner_texts()


def test_conversations_are_listed_opened_and_deleted(
    browser, fake_server: FakeOpenAI, tmp_path: Path, screenshots: Path
):
    store = LogStore(database_url(str(tmp_path / "chats.db"))).open()
    try:
        with launched(remote_settings(fake_server), store=store) as url:
            chat = Chat(browser, url)
            try:
                chat.page.get_by_label("Toggle Sidebar").click()
                new_chat = chat.page.get_by_role("button", name="New chat")
                for topic in ("Sailing in Lisbon", "Baking sourdough bread"):
                    new_chat.click()
                    expect(chat.users).to_have_count(0)
                    chat.send(topic)
                    chat.wait_for_reply()
                expect(chat.page.locator("#conversations label")).to_have_text(
                    ["Baking sourdough bread", "Sailing in Lisbon"]
                )  # newest first, titled by the first message
                expect(chat.page.locator("#conversations input:checked")).to_have_count(1)  # the one shown

                chat.page.locator("#conversations label", has_text="Sailing in Lisbon").click()
                expect(chat.users).to_have_text(["Sailing in Lisbon"])
                expect(chat.bots).to_have_text(["Echo: Sailing in Lisbon"])
                chat.send("And in winter?")
                chat.wait_for_reply()
                sent = fake_server.chat_requests[-1].body["messages"]
                assert [m["content"] for m in sent[1:]] == [
                    "Sailing in Lisbon",
                    "Echo: Sailing in Lisbon",
                    "And in winter?",
                ]
                expect(chat.page.locator("#conversations label")).to_have_text(
                    ["Sailing in Lisbon", "Baking sourdough bread"]
                )  # the one just continued comes first
                chat.page.wait_for_timeout(300)
                chat.page.screenshot(path=screenshots / "conversations.png")

                chat.page.reload()  # the conversation open is the one shown again
                expect(chat.users).to_have_text(["Sailing in Lisbon", "And in winter?"])
                # Nothing of a conversation is kept in the browser: only the server has it.
                kept = chat.page.evaluate("JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
                assert "Lisbon" not in kept and "sourdough" not in kept

                other = Chat(browser, url)  # another visitor: nothing of this one's
                try:
                    other.page.get_by_label("Toggle Sidebar").click()
                    expect(other.page.get_by_role("button", name="New chat")).to_be_visible()
                    assert listed(other) == []
                finally:
                    other.close()

                chat.page.get_by_label("Toggle Sidebar").click()
                chat.page.locator("#conversations label", has_text="Sailing in Lisbon").click()
                expect(chat.users).to_have_count(2)
                chat.page.get_by_role("button", name="Delete this conversation").click()
                expect(chat.users).to_have_count(0)
                expect(chat.page.locator("#conversations label")).to_have_text(["Baking sourdough bread"])
                store.flush()
                with store.engine.connect() as connection:
                    titles = connection.execute(sa.select(conversations.c.title)).scalars().all()
                assert titles == ["Baking sourdough bread"]  # the row is gone from the database
                chat.page.reload()
                expect(chat.page.locator("#conversations label")).to_have_text(["Baking sourdough bread"])
                expect(chat.users).to_have_count(0)  # a reload does not bring the deleted one back
                assert [e for e in chat.console_errors if "status of 422" not in e] == []
            finally:
                chat.close()
    finally:
        store.close()


def test_a_reply_streaming_in_a_conversation_left_goes_on_and_shows_when_opened_again(
    browser, fake_server: FakeOpenAI, tmp_path: Path
):
    store = LogStore(database_url(str(tmp_path / "chats.db"))).open()
    slow = "Hello there! " + " ".join(f"word{i}" for i in range(60))  # 3 s
    try:
        with launched(remote_settings(fake_server), store=store) as url:
            chat = Chat(browser, url, watch_requests=False)
            try:
                chat.send("First")
                chat.wait_for_reply()
                fake_server.default = Reply(text=slow, delay=0.05)
                chat.page.get_by_label("Toggle Sidebar").click()
                chat.page.get_by_role("button", name="New chat").click()
                chat.send("Talk slowly")
                expect(chat.bots.last).to_contain_text("word3")
                chat.page.locator("#conversations label", has_text="First").click()
                expect(chat.users).to_have_text(["First"])  # the other reply does not write over it
                chat.page.wait_for_timeout(500)
                expect(chat.users).to_have_text(["First"])
                chat.page.locator("#conversations label", has_text="Talk slowly").click()
                expect(chat.users).to_have_text(["Talk slowly"])
                expect(chat.bots.last).to_have_text(slow)  # it went on, whole, from one request
                assert len(fake_server.chat_requests) == 2 and not fake_server.closed_early
            finally:
                chat.close()
    finally:
        store.close()
