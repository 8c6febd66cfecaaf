"""Scenario 7: a long reply rendering in a real Chromium."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import CHROMIUM, App, Figure, Report, server_stats

RECORD_RENDERS = """
window.__renders = [];
document.addEventListener('DOMContentLoaded', () => new MutationObserver(() => {
  const bots = document.querySelectorAll('[data-testid="bot"]:not(:has(.thought-group))');  // the answer
  if (!bots.length) return;
  const length = bots[bots.length - 1].innerText.length;
  const renders = window.__renders;
  if (!renders.length || renders[renders.length - 1][1] !== length) renders.push([Date.now(), length]);
}).observe(document.body, {subtree: true, childList: true, characterData: true}));
"""


def browser_render(report: Report, ours: App, server_url: str, runs: int, tokens: int) -> None:
    if not Path(CHROMIUM).exists():
        report.add("7. Browser", "Not measured: no chromium here (`apt-get install chromium`).")
        return
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
    wall_offset = time.time() - time.monotonic()  # the server reports monotonic times; the page, wall time
    sends, renders, first_lags, final_lags, counts = [], [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        for run in range(runs + 1):
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.add_init_script(RECORD_RENDERS)
            page.goto(ours.url)
            textbox = page.locator('textarea[data-testid="textbox"]').first
            textbox.fill(f"bench:{tokens}:1")
            textbox.press("Enter")
            final_length = len("".join(f"w{i} " for i in range(tokens)).strip())
            page.wait_for_function(
                f"window.__renders.length && window.__renders[window.__renders.length - 1][1] >= {final_length}",
                timeout=120_000,
            )
            rendered = page.evaluate("window.__renders")
            page.close()
            first_sent, last_sent = server_stats(server_url)["sent"][-1]
            if run == 0:
                continue  # the first run warms the browser up
            first_render, final_render = rendered[0][0] / 1000, rendered[-1][0] / 1000
            sends.append(last_sent - first_sent)
            renders.append(final_render - first_render)
            first_lags.append(first_render - (first_sent + wall_offset))
            final_lags.append(final_render - (last_sent + wall_offset))
            counts.append(len(rendered))
        browser.close()
    send, render = Figure(sends), Figure(renders)
    report.add(
        f"7. Browser: a {tokens}-token reply, one token per ms, rendered by our app in Chromium",
        "| | |\n| --- | --- |\n"
        f"| server: first to last token sent | {send.s()} |\n"
        f"| page: first to final render | {render.s()} |\n"
        f"| render span / send span | **{render.median / send.median:.2f}** |\n"
        f"| first render after first token sent | {Figure(first_lags).ms()} |\n"
        f"| final render after last token sent | {Figure(final_lags).ms()} |\n"
        f"| renders seen by the page | {Figure(counts).plain(digits=0)} |",
    )
