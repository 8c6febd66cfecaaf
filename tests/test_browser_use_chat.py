"""The seed's own page (tests/js/page.tsx: useChat from @ai-sdk/react), bundled with esbuild and served from
another loopback origin, chatting with this app's /api/chat in a real Chromium."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.logs import LogStore, database_url
from testkit.ai_sdk import JS, node_ready
from testkit.browser import browser, expect  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.processes import free_port
from testkit.support import launched, remote_settings

# Long enough (two seconds and more after its first words) that the page is seen while it streams.
SKY = "The sky is blue because of Rayleigh scattering. " + " ".join(f"word{i}" for i in range(60))


@pytest.fixture(scope="module")
def page_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A static server on its own loopback port for the bundled page; yields its origin and folder."""
    folder = tmp_path_factory.mktemp("use-chat-page")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def bundle(folder: Path, api: str) -> str:
    """The page built as Next.js would inline NEXT_PUBLIC_CHAT_API; returns the page's file name."""
    node_ready()
    name = f"page-{len(list(folder.glob('*.html')))}"
    subprocess.run(
        [
            str(JS / "node_modules" / ".bin" / "esbuild"),
            "main.tsx",
            "--bundle",
            "--minify",
            "--jsx=automatic",
            "--log-level=warning",
            f"--outfile={folder / name}.js",
            "--define:process.env.NODE_ENV='production'".replace("'", '"'),
            f'--define:process.env.NEXT_PUBLIC_CHAT_API="{api}"',
        ],
        cwd=JS,
        check=True,
        timeout=120,
    )
    (folder / f"{name}.html").write_text(f'<!doctype html><div id="root"></div><script src="{name}.js"></script>')
    return f"{name}.html"


@pytest.fixture(scope="module")
def seed_page(
    page_origin: tuple[str, Path], fake_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app, keeping conversations and letting the page's origin call it, and the page pointed at it;
    yields the page's URL."""
    origin, folder = page_origin
    store = LogStore(database_url(str(tmp_path_factory.mktemp("kept") / "chats.db"))).open()
    try:
        with launched(remote_settings(fake_server, cors_origins=(origin,)), store=store) as url:
            yield f"{origin}/{bundle(folder, url + 'api/chat')}"
    finally:
        store.close()


def test_the_seed_page_streams_the_reply_in_and_stop_stops_it(browser, seed_page: str, server: FakeOpenAI):
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(seed_page)
        server.default = Reply(text=SKY, delay=0.05)
        page.locator("input").fill("Why is the sky blue?")
        page.locator("input").press("Enter")
        answer = page.locator(".assistant").last
        expect(answer).to_contain_text("Rayleigh")
        seen = answer.inner_text()
        assert SKY.startswith(seen) and seen != SKY  # it arrives in pieces
        expect(answer).to_have_text(SKY)
        expect(page.locator(".user")).to_have_text(["Why is the sky blue?"])
        sent = server.chat_requests[-1].body["messages"]
        assert sent[-1] == {"role": "user", "content": "Why is the sky blue?"}

        slow = " ".join(f"word{i}" for i in range(600))
        server.default = Reply(text=slow, delay=0.1)
        page.locator("input").fill("Talk slowly")
        page.locator("input").press("Enter")
        expect(page.locator(".assistant").last).to_contain_text("word3")
        page.get_by_role("button", name="Stop").click()
        assert server.wait_for(lambda: server.closed_early, timeout=1.0), "Stop left the upstream stream open"
        partial = page.locator(".assistant").last.inner_text()
        page.wait_for_timeout(500)
        expect(page.locator(".assistant").last).to_have_text(partial)  # nothing more arrives
        assert slow.startswith(partial) and len(partial) < len(slow)
        assert errors == []
    finally:
        context.close()


def test_a_reload_mid_reply_shows_the_conversation_and_the_reply_continuing_from_the_same_upstream_request(
    browser, seed_page: str, server: FakeOpenAI
):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(seed_page)
        page.locator("input").fill("Remember apples")
        page.locator("input").press("Enter")
        expect(page.locator(".assistant")).to_have_text(["Echo: Remember apples"])
        slow = " ".join(f"word{i}" for i in range(80))  # 4 s
        server.default = Reply(text=slow, delay=0.05)
        page.locator("input").fill("Talk slowly")
        page.locator("input").press("Enter")
        expect(page.locator(".assistant").last).to_contain_text("word3")
        page.reload()
        # The conversation as the server kept it, and the reply so far, still streaming.
        expect(page.locator(".user")).to_have_text(["Remember apples", "Talk slowly"])
        answers = page.locator(".assistant")
        expect(answers.first).to_have_text("Echo: Remember apples")
        expect(answers.last).to_contain_text("word1")
        assert answers.last.inner_text() != slow
        expect(answers).to_have_text(["Echo: Remember apples", slow])
        assert len(server.chat_requests) == 2 and not server.closed_early
        chat_id = page.evaluate("sessionStorage.chatId")

        server.default = Reply()  # the echo
        page.locator("input").fill("What did I say first?")  # the kept messages go back as the conversation
        page.locator("input").press("Enter")
        expect(answers.last).to_have_text("Echo: What did I say first?")
        sent = [(m["role"], m["content"]) for m in server.chat_requests[-1].body["messages"][1:]]
        assert sent == [
            ("user", "Remember apples"),
            ("assistant", "Echo: Remember apples"),
            ("user", "Talk slowly"),
            ("assistant", slow),
            ("user", "What did I say first?"),
        ]
    finally:
        context.close()

    # Another browser (another owner cookie) given the same chat id sees nothing of it.
    stranger = browser.new_context()
    try:
        stranger.add_init_script(f"sessionStorage.chatId = {chat_id!r}")
        page = stranger.new_page()
        page.goto(seed_page)
        expect(page.locator("input")).to_be_visible()
        page.wait_for_timeout(500)
        assert page.locator(".user, .assistant").count() == 0
    finally:
        stranger.close()


def test_a_page_on_an_origin_not_listed_reads_why_it_is_refused(
    browser, page_origin: tuple[str, Path], fake_server: FakeOpenAI
):
    origin, folder = page_origin
    fake_server.reset()
    with launched(remote_settings(fake_server)) as url:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(f"{origin}/{bundle(folder, url + 'api/chat')}")
            page.locator("input").fill("Hi")
            page.locator("input").press("Enter")
            expect(page.locator(".error")).to_have_text(
                f"Calls from {origin} are off: start the app with --cors-origins {origin}."
            )
            assert fake_server.chat_requests == []
        finally:
            context.close()
