"""The workbench in a real Chromium: thumbs and a comment, the review page, and Compare streaming two sides."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pages.compare import STOPPED
from storage.logs import LogStore, database_url
from testkit.browser import Chat, browser, expect, screenshots  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.support import launched, remote_settings

SLOW = Reply(text=" ".join(f"word{i}" for i in range(100)), delay=0.05)  # 5 s


@pytest.fixture(scope="module")
def workbench(fake_server: FakeOpenAI, tmp_path_factory) -> Iterator[tuple[str, LogStore]]:
    target = str(tmp_path_factory.mktemp("workbench") / "chats.db")
    store = LogStore(database_url(target)).open()
    settings = remote_settings(fake_server, log_db=target, review_auth=(("lead", "pw-review"),))
    try:
        with launched(settings, ["fake-model", "fake-model-2"], store=store) as url:
            yield url, store
    finally:
        store.close()


@pytest.fixture
def tab(browser, workbench, server: FakeOpenAI) -> Iterator[Chat]:
    chat = Chat(browser, workbench[0])
    yield chat
    chat.close()
    assert chat.external_requests == [] and chat.console_errors == []


def test_thumbs_down_with_a_comment_is_stored_with_its_turn(tab: Chat, workbench, server: FakeOpenAI):
    _, store = workbench
    expect(tab.page.get_by_text("Conversations on this demo are recorded")).to_be_visible()
    for text in ("How tall is Everest?", "And K2?"):
        tab.send(text)
        tab.wait_for_reply()
    tab.bots.first.hover()
    tab.page.get_by_role("button", name="Dislike").first.click()  # the first reply
    comment = tab.page.get_by_label("Tell us more about this reply (optional)")
    expect(comment).to_be_visible()
    # By the reply: right under the chat, above Model settings.
    settings_button = tab.page.get_by_text("Model settings", exact=True)
    assert comment.bounding_box()["y"] < settings_button.bounding_box()["y"]
    comment.fill("It did not answer.")
    tab.page.get_by_role("button", name="Send comment").click()
    expect(comment).to_be_hidden()
    store.flush()
    rows = {row["message"]: row for row in store.find()}
    assert (rows["How tall is Everest?"]["feedback"], rows["How tall is Everest?"]["comment"]) == (
        -1,
        "It did not answer.",
    )
    assert rows["And K2?"]["feedback"] is None


def test_the_review_page_needs_its_login_filters_and_opens_a_conversation(
    tab: Chat,
    workbench,
    server: FakeOpenAI,
    screenshots: Path,
):
    url, store = workbench
    tab.send("Where is Lisbon?")
    tab.wait_for_reply()
    tab.bots.last.hover()
    tab.page.get_by_role("button", name="Dislike").last.click()
    store.flush()
    page = tab.context.new_page()  # a second tab
    page.goto(url + "review")
    password = page.get_by_label("Password")
    page.get_by_label("User").fill("lead")
    password.fill("wrong")
    password.press("Enter")
    # One line under the form, which stays as it was and usable: no error badge over it, no toast.
    expect(page.locator("#review-login-status")).to_have_text("Wrong user name or password.")
    expect(page.get_by_label("User")).to_have_value("lead")
    expect(page.locator(".toast-body")).to_have_count(0)
    password.fill("pw-review")
    page.get_by_role("button", name="Log in").click()  # clickable: nothing covers it
    logged = len(store.find())  # this test's turn, and those of any test before it in this module
    expect(page.get_by_text(f"{logged} turn{'' if logged == 1 else 's'}.")).to_be_visible()
    expect(page.get_by_text("Where is Lisbon?").filter(visible=True).first).to_be_visible()
    # It reads at 1280 px: the short columns' titles fit on one line, and the table fits the page.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(300)
    heights = page.locator("th").evaluate_all("cells => cells.map(c => c.getBoundingClientRect().height)")
    assert heights and max(heights) < 1.5 * min(heights), heights  # no title wraps ("Statu/s")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the page does not overflow sideways
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1100, "height": 800})
    page.get_by_label("Thumbs down only").check()
    page.get_by_label("Text in the message or reply").fill("lisbon")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("1 turn.")).to_be_visible()
    page.get_by_text("Where is Lisbon?").filter(visible=True).first.click()
    conversation = page.locator('[data-testid="bot"]')
    expect(conversation.first).to_contain_text("Echo: Where is Lisbon?")
    page.wait_for_timeout(300)
    page.screenshot(path=screenshots / "review.png", full_page=True)
    # The export comes from the app's own route, to this signed-in browser only (its cookie).
    with page.expect_download() as download:
        page.get_by_role("button", name="Export these as JSONL").click()
    assert download.value.suggested_filename.startswith("chats-")
    [line] = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert "Where is Lisbon?" in line
    expect(page.locator("#review-export-status")).to_contain_text("Exported 1 turn to chats-")
    page.reload()  # still signed in: the cookie, not the connection, holds the sign-in
    expect(page.get_by_text(f"{logged} turn{'' if logged == 1 else 's'}.")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Password")).to_be_visible()
    expect(page.get_by_role("button", name="Search")).to_be_hidden()


def test_compare_streams_both_sides_at_once_and_stop_ends_one(tab: Chat, workbench, server: FakeOpenAI, screenshots):
    url, store = workbench
    server.default = SLOW
    page = tab.page
    page.goto(url + "compare")
    temperature_b = page.get_by_label("number input for Temperature B")
    temperature_b.fill("1.2")  # one model with two settings, or two models
    temperature_b.press("Enter")
    expect(temperature_b).to_have_value("1.2")
    box = page.get_by_placeholder("One message, to both sides…")
    box.fill("Name sixty words.")
    box.press("Enter")
    side_a = page.locator('#compare-a [data-testid="bot"]').first
    side_b = page.locator('#compare-b [data-testid="bot"]').first
    expect(side_a).to_contain_text("word3")
    expect(side_b).to_contain_text("word3")
    assert server.wait_for(lambda: server.peak_open_streams >= 2)  # both streams open together
    page.get_by_role("button", name="Stop A").click()
    assert server.wait_for(lambda: len(server.closed_early) == 1, timeout=5)
    expect(side_b).to_contain_text("word99", timeout=15_000)  # B went on to the end
    assert "word99" not in side_a.inner_text()
    # The stopped side says so, with its stats line, as the chat does.
    expect(page.locator("#compare-a")).to_contain_text(STOPPED)
    expect(page.locator("#compare-a").get_by_text("Stats")).to_be_visible()
    expect(page.locator("#compare-b").get_by_text("Stats")).to_be_visible()
    for name in ("Stop A", "Stop B"):  # not the red of a destructive action while nothing runs
        assert "stop" not in (page.get_by_role("button", name=name).get_attribute("class") or "").split()
    page.wait_for_timeout(300)
    page.screenshot(path=screenshots / "compare.png", full_page=True)
    page.get_by_role("button", name="B is better").click()
    expect(page.get_by_text("Vote recorded: B is better.")).to_be_visible()
    store.flush()
    [vote] = store.all_votes()
    assert vote["vote"] == "b" and vote["message"] == "Name sixty words."
    assert vote["b"]["temperature"] == 1.2 and vote["b"]["reply"].endswith("word99")

    review = tab.context.new_page()  # the vote is on /review, with both sides
    review.goto(url + "review")
    review.get_by_label("User").fill("lead")
    review.get_by_label("Password").fill("pw-review")
    review.get_by_role("button", name="Log in").click()
    votes = review.locator("table").filter(has_text="When (UTC)")
    expect(votes).to_contain_text("Name sixty words.")
    expect(votes).to_contain_text("B is better")
    expect(votes).to_contain_text("(temperature 1.2)")
