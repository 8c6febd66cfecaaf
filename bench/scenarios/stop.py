"""Scenario 5: Stop: how soon the upstream stream closes after the user stops."""

from __future__ import annotations

import time

from bench.common import App, Figure, Report, server_stats, verdict


def stop(report: Report, apps: dict[str, App], server_url: str, runs: int) -> None:
    rows, closed_after = [], {}
    for name in ("ours", "gr.load_chat"):
        app = apps[name]
        latencies: list[float] = []  # every run counts: one that ran on or never closed, with how long it took
        ran_on = closed_early = 0
        for _ in range(runs):
            before = server_stats(server_url)
            app.client.reset_session()
            job = app.client.submit(app.message("bench:150:20"), api_name=app.api_name)  # 3 s long
            for seen, _update in enumerate(job, start=1):
                if seen == 3:
                    break
            cancelled = time.monotonic()
            job.cancel()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                stats = server_stats(server_url)
                if len(stats["closed_early"]) > len(before["closed_early"]):
                    latencies.append(stats["closed_early"][-1] - cancelled)
                    closed_early += 1
                    break
                if stats["streams_completed"] > before["streams_completed"]:
                    ran_on += 1  # the upstream stream ran to its end although the user pressed Stop
                    latencies.append(time.monotonic() - cancelled)
                    break
                time.sleep(0.005)
            else:
                latencies.append(10.0)  # not closed within 10 s: counted as 10 s
        closed_after[name] = Figure(latencies)
        rows.append(f"| {name} | {closed_after[name].ms()} | {closed_early} of {runs} | {ran_on} of {runs} |")
    ours = closed_after["ours"]
    report.add(
        "5. Stop: from `job.cancel()` to the server seeing the stream closed (a 3 s reply, cancelled after 3 updates)",
        "| | time until the upstream stream ended (every run) | closed early | ran to the end anyway |\n"
        "| --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n\nA run whose stream ran to its end counts with the time it took to end; one that had not ended "
        f"after 10 s counts as 10 s. Target <= 1 s (median over every run): {verdict(ours.median, 1.0)}.",
    )
