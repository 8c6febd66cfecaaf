"""Scenario 10: what the conversation log costs a reply."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.common import CLOSE_CALL_ROUNDS, App, Figure, Report, ask, side_by_side


def logging_cost(report: Report, off: App, on: App, log_db: Path, runs: int, users: int, tokens: int) -> None:
    """Time to first update with the conversation log on (SQLite) next to the same app with it off: one user, then
    many at once in CLOSE_CALL_ROUNDS times the usual rounds."""
    one: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(runs):  # alternating, so that anything else the machine does hits both alike
        for name, app in (("off", off), ("on", on)):
            one[name].append(ask(app, app.client, f"bench:{tokens}:20").first)
    rounds = CLOSE_CALL_ROUNDS * runs
    measured = side_by_side({"off": off, "on": on}, rounds, users, tokens)
    with sqlite3.connect(log_db) as db:
        logged = db.execute("SELECT count(*), count(DISTINCT id) FROM chat_turns").fetchone()
    expected = runs + (rounds + 1) * users  # every turn through the logging app, the warm-up included
    alone = {name: Figure(values) for name, values in one.items()}
    many, change = measured.first, measured.change("first", "on", "off")
    report.add(
        f"10. Conversation log: time to first update with `--log-db` (SQLite) on and off, alone and {users} at once",
        f"| | one user | {users} users at once, p50 |\n| --- | --- | --- |\n"
        f"| logging off | {alone['off'].ms()} | {many['off'].ms()} |\n"
        f"| **logging on** | {alone['on'].ms()} | {many['on'].ms()} |\n\n"
        f"With {users} users at once, the two apps in turn for {rounds} rounds (each first in every other round), "
        f"logging on changes the p50 time to first update by **{change.text()}** (target at most +10%: "
        f"{change.verdict(0.10)}). Turns in the log after the run: {logged[0]} ({logged[1]} distinct) of "
        f"{expected} sent through the logging app; {measured.complete['on']} of {rounds * users} replies at once "
        f"complete through it.",
    )
