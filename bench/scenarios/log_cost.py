"""Scenario 10: what the conversation log costs a reply."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.common import App, Figure, Report, ask, crowd, percentile, verdict


def logging_cost(report: Report, off: App, on: App, log_db: Path, runs: int, users: int, tokens: int) -> None:
    """Time to first update with the conversation log on (SQLite) next to the same app with it off."""
    text, last = f"bench:{tokens}:20", f"w{tokens - 1}"
    for app in (off, on):
        crowd(app, users, text, last)  # warm-up
    firsts: dict[str, list[float]] = {"off": [], "on": []}
    crowds: dict[str, list[float]] = {"off": [], "on": []}
    done = 0
    for _ in range(runs):  # alternating, so that anything else the machine does hits both alike
        for name, app in (("off", off), ("on", on)):
            firsts[name].append(ask(app, app.client, text).first)
            _, streams = crowd(app, users, text, last)
            crowds[name].append(percentile([s.first for s in streams], 0.5))
            done += sum(s.complete for s in streams) if name == "on" else 0
    with sqlite3.connect(log_db) as db:
        logged = db.execute("SELECT count(*), count(DISTINCT id) FROM chat_turns").fetchone()
    expected = (runs + 1) * (users + 1) - 1  # every turn through the logging app, warm-up included
    one = {name: Figure(values) for name, values in firsts.items()}
    many = {name: Figure(values) for name, values in crowds.items()}
    change = many["on"].median / many["off"].median - 1
    report.add(
        f"10. Conversation log: time to first update with `--log-db` (SQLite) on and off, alone and {users} at once",
        f"| | one user | {users} users at once, p50 |\n| --- | --- | --- |\n"
        f"| logging off | {one['off'].ms()} | {many['off'].ms()} |\n"
        f"| **logging on** | {one['on'].ms()} | {many['on'].ms()} |\n\n"
        f"With {users} users at once, logging on changes the p50 time to first update by **{change * 100:+.1f}%** "
        f"(target within 10%: {verdict(abs(change), 0.10)}). Turns in the log after the run: {logged[0]} "
        f"({logged[1]} distinct) of {expected} sent through the logging app.",
    )
