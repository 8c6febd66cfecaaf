"""Scenario 6: memory while many replies stream."""

from __future__ import annotations

import threading
import time

from bench.common import App, Report, many_at_once
from testkit.processes import rss_mb


def memory(report: Report, apps: dict[str, App], streams: int, tokens: int) -> None:
    ours = apps["ours"]
    idle = rss_mb(ours.pid)
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(ours.pid))
            time.sleep(0.05)

    clients = [ours.new_client() for _ in range(streams)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        many_at_once(ours, clients, f"bench:{tokens}:20")
    finally:
        done.set()
        sampler.join()
    after = rss_mb(ours.pid)
    report.add(
        "6. Memory: resident set size of the app process",
        "| | ours | `gr.load_chat` | echo |\n| --- | --- | --- | --- |\n"
        f"| idle, after warm-up | {idle:.0f} MB | {rss_mb(apps['gr.load_chat'].pid):.0f} MB | "
        f"{rss_mb(apps['echo'].pid):.0f} MB |\n"
        f"| peak with {streams} streams active ({tokens} tokens at 20 ms) | {peak:.0f} MB | | |\n"
        f"| after they finished | {after:.0f} MB | | |\n\n"
        f"Per active stream: **{(peak - idle) / streams * 1024:.0f} KB**.",
    )
