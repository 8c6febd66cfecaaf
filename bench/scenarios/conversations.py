"""Scenario 13: the conversation list in Chromium: 1000 conversations listed, a 200-turn one opened."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from bench.common import CHROMIUM, App, Figure, Report, verdict
from chat.service import LISTED, OPENED
from pages.owners import COOKIE, owner
from storage.logs import ConversationRecord, LogStore, database_url, now

# Armed before a click: from the click (as the page sees it) to `want` elements matching `counted` (and
# containing `text`) shown, the time a person waits. (A function, not eval(): the app's Content-Security-Policy
# forbids eval.)
ARM = """([counted, want, text]) => {
  window.__waited = undefined;
  const shown = () => [...document.querySelectorAll(counted)].filter((e) => e.textContent.includes(text)).length;
  document.addEventListener('click', () => {
    const started = performance.now();
    const check = () => shown() === want
      ? (window.__waited = performance.now() - started) : requestAnimationFrame(check);
    check();
  }, {capture: true, once: true});
}"""
USERS = '[data-testid="user"]'
LISTED_LABELS = "#conversations label"
ANSWER = "The answer to question {turn}: " + "a sentence of about this length, with some words in it. " * 8


def timed_click(page, clicked: str, counted: str, want: int, text: str = "") -> float:
    """Seconds from a click on `clicked` to `want` elements matching `counted` (and containing `text`)."""
    page.evaluate(ARM, [counted, want, text])
    page.locator(clicked).click()
    try:  # (0 when they were there already: the wait is over, and not falsy)
        page.wait_for_function("window.__waited !== undefined", timeout=60_000)
    except Exception as exc:
        shown = page.locator(counted, has_text=text).count()
        raise RuntimeError(f"After a click on {clicked}: {shown} of {counted} {text!r} shown, not {want}") from exc
    return page.evaluate("window.__waited") / 1000


def fill(store_db: Path, visitor: str, count: int, turns: int) -> str:
    """`count` conversations of the visitor's (each of one turn, but the second newest of `turns`); its id."""
    store, moment = LogStore(database_url(str(store_db))).open(), now()
    long_id = "long-conversation"
    for number in range(count):
        many = turns if number == count - 2 else 1
        messages = []
        for turn in range(many):
            messages += [
                {"role": "user", "content": f"Question {turn} of conversation {number}: what about this?"},
                {"role": "assistant", "content": ANSWER.format(turn=turn)},
            ]
        updated = moment - timedelta(seconds=count - number)
        conversation = long_id if many > 1 else f"short-{number}"
        store.save_conversation(
            ConversationRecord(conversation, visitor, f"Conversation {number}", updated, updated, "done", messages)
        )
    store.flush(timeout=60)
    store.close()
    return long_id


def conversation_list(report: Report, app: App, store_db: Path, runs: int, count: int, turns: int) -> None:
    title = f"13. Conversation list: {count} conversations in the sidebar, one of {turns} turns opened, in Chromium"
    if not Path(CHROMIUM).exists():
        report.add(title, "Not measured: no chromium here (`apt-get install chromium`).")
        return
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
    opens, wholes, lists, mores, reads = [], [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        page = context.new_page()
        page.goto(app.url)  # the visitor's owner cookie
        [cookie] = [c["value"] for c in context.cookies() if c["name"] == COOKIE]
        visitor = f"page:{owner(f'{COOKIE}={cookie}', None)}"
        long_id = fill(store_db, visitor, count, turns)
        store = LogStore(database_url(str(store_db))).open()
        for _ in range(runs * 4):  # the store's own read of the list, without the page
            started = time.perf_counter()
            assert len(store.owned(visitor, count)) == count
            reads.append(time.perf_counter() - started)
        store.close()
        shown = OPENED // 2 if 2 * turns > OPENED else turns  # user messages a long conversation opens with
        left = count
        for run in range(runs + 1):
            page.reload()
            page.get_by_label("Toggle Sidebar").click()
            page.locator(LISTED_LABELS).nth(LISTED - 1).wait_for(timeout=60_000)
            short = page.locator("#conversations input").nth(2).get_attribute("value")
            # Its one question, which no other conversation has (the page may show another short one now).
            asked = f"of conversation {short.removeprefix('short-')}:"
            timed_click(page, f'{LISTED_LABELS}:has(input[value="{short}"])', USERS, 1, asked)
            opened = timed_click(page, f'{LISTED_LABELS}:has(input[value="{long_id}"])', USERS, shown)
            whole = timed_click(page, "#show-earlier", USERS, turns)
            timed_click(page, f'{LISTED_LABELS}:has(input[value="{short}"])', USERS, 1, asked)
            relisted = timed_click(page, "#delete-conversation", f'{LISTED_LABELS}:has(input[value="{short}"])', 0)
            left -= 1
            more = timed_click(page, "#show-more", LISTED_LABELS, min(2 * LISTED, left))
            if run == 0:
                continue  # the first run warms the page up
            opens.append(opened)
            wholes.append(whole)
            lists.append(relisted)
            mores.append(more)
        browser.close()
    opened, whole, relisted, more = Figure(opens), Figure(wholes), Figure(lists), Figure(mores)
    read = Figure(reads)
    report.add(
        title,
        "| | |\n| --- | --- |\n"
        f"| open the {turns}-turn conversation: click to its newest {shown} turns shown | **{opened.ms()}** |\n"
        f"| then Show earlier messages: click to all {turns} turns shown | {whole.ms()} |\n"
        f"| delete one: click to the list (its newest {LISTED} of {count}) shown again | **{relisted.ms()}** |\n"
        f"| Show more: click to {LISTED} more listed | {more.ms()} |\n"
        f"| the store's read of all {count} (SQLite, in-process, no page) | {read.ms()} |\n\n"
        f"Targets: open a {turns}-turn conversation < 300 ms ({verdict(opened.median, 0.3)}: it opens with its "
        f"newest {OPENED} messages, the rest on asking); list {count} conversations < 100 ms "
        f"({verdict(relisted.median, 0.1)}: the sidebar lists the newest {LISTED}, more on asking, measured as "
        "the whole delete: the click, the deletion, the list read again and rendered).",
    )
