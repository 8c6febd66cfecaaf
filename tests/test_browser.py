"""The chat in a real Chromium, used as a person uses it.

Runs Debian's chromium (apt-get install chromium) through Playwright; Playwright's own
browser download is not needed. Skipped, with the reason, only where no chromium is
installed, and never under CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from config import load_settings
from errors import NOTICE
from tests.conftest import SENTINEL_KEY, remote_settings
from tests.fake_openai import FakeOpenAI, Reply
from tests.support import launched

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Keeps a copy of every fetch() response the page reads, streamed ones included, as it arrives
# (Playwright's response.body() waits for the end, and Gradio's heartbeat stream never ends).
RECORD_FETCHED = """
window.__fetched = [];
const originalFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await originalFetch(...args);
  const entry = {url: String(args[0] && args[0].url ? args[0].url : args[0]), text: ""};
  window.__fetched.push(entry);
  if (response.body) {
    const reader = response.clone().body.getReader();
    const decoder = new TextDecoder();
    (async () => {
      for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        entry.text += decoder.decode(value, {stream: true});
      }
    })().catch(() => {});
  }
  return response;
};
"""
LONG_REPLY = "Hello there! " + " ".join(f"word{i}" for i in range(40))

# Records every distinct text the newest assistant bubble shows, as the page renders it.
RECORD_BOT_TEXTS = """
window.__botTexts = [];
const record = () => {
  const bots = document.querySelectorAll('[data-testid="bot"]');
  if (!bots.length) return;
  const text = bots[bots.length - 1].innerText.trim();
  const seen = window.__botTexts;
  if (text && seen[seen.length - 1] !== text) seen.push(text);
};
document.addEventListener('DOMContentLoaded', () =>
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true}));
"""


# One browser for every test here. Module scope, not session: Playwright's sync API keeps an
# event loop running while it is open, which would break asyncio.run() in later test modules.
@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        reason = "no chromium at /usr/bin/chromium: `apt-get install -y chromium` to run the browser tests"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but there is {reason}")
        pytest.skip(reason)
    with playwright_api.sync_playwright() as playwright:
        # launch() gives every browser a fresh, temporary user-data dir.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Chat:
    """One browser tab on the app, with what it logged and where it tried to connect."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        self.console_errors: list[str] = []
        self.external_requests: list[str] = []
        self.responses: list = []
        self.context.route("**/*", self._loopback_only)
        self.context.add_init_script(RECORD_BOT_TEXTS)
        self.context.add_init_script(RECORD_FETCHED)
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))
        self.page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        self.page.on("response", lambda response: self.responses.append(response))
        self.page.goto(url)
        # The chat's textbox comes first; the system prompt's is inside the accordion.
        self.textbox = self.page.locator('textarea[data-testid="textbox"]').first
        expect(self.textbox).to_be_editable()

    def _loopback_only(self, route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.external_requests.append(route.request.url)
            route.abort()

    @property
    def bots(self):
        return self.page.locator('[data-testid="bot"]')

    @property
    def users(self):
        return self.page.locator('[data-testid="user"]')

    def send(self, message: str) -> None:
        self.page.evaluate("window.__botTexts = []")
        self._bots_before = self.bots.count()
        self.textbox.fill(message)
        self.textbox.press("Enter")

    def wait_for_reply(self) -> None:
        """Wait until the reply to the last message is complete.

        Gradio disables the textbox before the reply's bubble appears and enables it
        again once the reply is over, so the pair says "done" without racing the start.
        """
        expect(self.bots).to_have_count(self._bots_before + 1, timeout=30_000)
        expect(self.textbox).to_be_editable(timeout=30_000)

    def bot_texts(self) -> list[str]:
        return self.page.evaluate("window.__botTexts")

    def everything_received(self) -> list[str]:
        """The page's HTML, every finished non-fetch response, and every fetch response so far."""
        finished = [r.text() for r in self.responses if r.request.resource_type not in ("fetch", "xhr", "eventsource")]
        fetched = [entry["text"] for entry in self.page.evaluate("window.__fetched")]
        return [self.page.content(), *finished, *fetched]

    def close(self) -> None:
        self.context.close()


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
    server.default = Reply(text=LONG_REPLY, delay=0.1)
    chat.send("Talk slowly")
    expect(chat.bots.last).to_contain_text("word3")
    chat.page.locator('[data-testid="stop-button"]').click()
    assert server.wait_for(lambda: server.closed_early, timeout=5)
    chat.wait_for_reply()
    partial = chat.bots.last.inner_text().strip()
    chat.page.wait_for_timeout(500)
    expect(chat.bots.last).to_have_text(partial)  # nothing more arrives
    assert LONG_REPLY.startswith(partial) and len(partial) < len(LONG_REPLY)

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
    chat.page.get_by_text("Model settings", exact=True).click()
    chat.page.get_by_label("System prompt").fill("You are a pirate.")
    temperature = chat.page.get_by_label("number input for Temperature")
    temperature.fill("1.3")
    temperature.press("Enter")
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
    chat.page.get_by_role("button", name="Submit").click()
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


def test_the_embedded_model_streams_in_the_browser_and_the_readme_screenshot(browser, local_app_url: str):
    chat = Chat(browser, local_app_url)
    try:
        chat.page.get_by_text("Model settings", exact=True).click()
        # Greedy decoding gives the same reply every run; these questions end on their own.
        for label, value in (("Temperature", "0"), ("Max tokens", "200")):
            chat.page.get_by_label(f"number input for {label}").fill(value)
            chat.page.get_by_label(f"number input for {label}").press("Enter")
        chat.page.get_by_text("Model settings", exact=True).click()
        for question in ("What is 2 + 2?", "Name three colours of the rainbow."):
            chat.send(question)
            chat.wait_for_reply()
            texts = chat.bot_texts()
            assert len(texts) >= 2, texts  # it streamed
            assert texts[-1] and NOTICE not in texts[-1]
        (ROOT / "docs").mkdir(exist_ok=True)
        chat.page.screenshot(path=ROOT / "docs" / "screenshot.png")
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
