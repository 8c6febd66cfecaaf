"""A real Chromium through Playwright for the browser tests: the browser, a chat tab, where screenshots go."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from testkit.processes import ROOT
from testkit.support import missing

playwright_api = pytest.importorskip("playwright.sync_api")


expect = playwright_api.expect


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


ANSWERS = '[data-testid="bot"]:not(:has(.thought-group))'


# Records every distinct text the newest assistant bubble shows, as the page renders it.
RECORD_BOT_TEXTS = """
window.__botTexts = [];
const record = () => {
  const bots = document.querySelectorAll('[data-testid="bot"]:not(:has(.thought-group))');
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
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: a temporary folder, so tests leave the tree as it was; with
    README_SCREENSHOTS=1, docs/, which refreshes the README's images."""
    if os.environ.get("README_SCREENSHOTS") == "1":
        return ROOT / "docs"
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        missing("no chromium at /usr/bin/chromium: `apt-get install -y chromium` to run the browser tests")
    with playwright_api.sync_playwright() as playwright:
        # launch() gives every browser a fresh, temporary user-data dir.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Chat:
    """One browser tab on the app, with what it logged and where it tried to connect."""

    def __init__(self, browser, url: str, *, watch_requests: bool = True) -> None:
        """watch_requests: route every request through the test, to record (and refuse) any beyond loopback;
        that routing holds back a streamed response on a reloaded page, so tests of reloads go without."""
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        self.console_errors: list[str] = []
        self.external_requests: list[str] = []
        self.responses: list = []
        if watch_requests:
            self.context.route("**/*", self._loopback_only)
        self.context.add_init_script(RECORD_BOT_TEXTS)
        self.context.add_init_script(RECORD_FETCHED)
        self.url = url
        # A new visitor's page asks the server for a conversation to show as it loads; a refused message typed
        # before that answer comes loses its notice (the answer resets the textbox's status), so wait for it,
        # as a person does without knowing. Its last step is the one event the page runs outside the queue.
        loaded = "/gradio_api/run/predict"
        with self.context.expect_event("response", lambda response: urlparse(response.url).path == loaded):
            self.open()

    def open(self) -> None:
        """A new tab on the app, in this browser (its cookies): the one the other methods drive."""
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))
        self.page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        self.page.on("response", lambda response: self.responses.append(response))
        self.page.goto(self.url)
        # The chat's textbox comes first; the system prompt's is inside the accordion.
        self.textbox = self.page.locator('textarea[data-testid="textbox"]').first
        expect(self.textbox).to_be_editable()

    def _loopback_only(self, route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.external_requests.append(route.request.url)
            route.abort()

    def open_settings(self) -> None:
        """Open Model settings and wait for it to finish opening: its inputs mount as it animates, and
        a value typed during that takes the initial value back (no person types that fast)."""
        self.page.get_by_text("Model settings", exact=True).click()
        expect(self.page.get_by_label("System prompt")).to_be_visible()
        self.page.wait_for_timeout(500)

    def set_setting(self, label: str, value: str) -> None:
        """Type a number into a Model settings slider's box, as a person does, and check it took."""
        box = self.page.get_by_label(f"number input for {label}")
        box.fill(value)
        box.press("Enter")
        expect(box).to_have_value(value)

    @property
    def bots(self):
        """The answers: assistant bubbles other than the folded thinking and stats."""
        return self.page.locator(ANSWERS)

    def folded(self, title: str):
        """The folded messages (thinking, stats) with this title."""
        return (
            self.page.locator('[data-testid="bot"]')
            .filter(has=self.page.locator(".thought-group"))
            .filter(has_text=title)
        )

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


def cut_reply_retried(tab: Chat, server, asked: list[str], partial: str) -> None:
    """A reply cut when its app process died: the page shows its partial text (starting with `partial`) and why,
    and Retry asks again, sending the provider `asked` (the conversation up to the cut reply's question)."""
    from testkit.fake_openai import Reply

    cut = tab.bots.last
    expect(cut).to_contain_text("The app restarted before this reply finished. Press retry to try again.")
    assert cut.inner_text().startswith(partial)  # the partial text, as saved
    server.default = Reply()
    tab.page.get_by_role("button", name="Retry").click()
    expect(tab.bots.last).to_have_text(f"Echo: {asked[-1]}")
    assert [m["content"] for m in server.chat_requests[-1].body["messages"][1:]] == asked
