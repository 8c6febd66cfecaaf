"""Scenario 12: what keeping conversations on the server (the default store) costs a reply."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.common import App, Report, side_by_side, verdict


def store_cost(report: Report, on: App, off: App, store_db: Path, runs: int, users: int, tokens: int) -> None:
    """Many visitors at once (with the owner cookie, so their conversations are kept), store on and off."""
    measured = side_by_side({"off": off, "on": on}, runs, users, tokens, visitors=True)
    with sqlite3.connect(store_db) as db:
        kept = db.execute("SELECT count(*) FROM chat_conversations WHERE status = 'done'").fetchone()[0]
    first, per_token, done = measured.first, measured.cpu_per_token, measured.complete["on"]
    first_change = measured.change("first", "on", "off")
    cpu_change = measured.change("cpu_per_token", "on", "off")
    report.add(
        f"12. Conversation store: {users} visitors at once with the store on (the default, SQLite) and `--store off`",
        f"| | first update p50 | app CPU per token |\n| --- | --- | --- |\n"
        f"| `--store off` | {first['off'].ms()} | {per_token['off'].format(1e6, ' µs', 0)} |\n"
        f"| **store on** | {first['on'].ms()} | {per_token['on'].format(1e6, ' µs', 0)} |\n\n"
        f"The store changes the p50 time to first update by **{first_change * 100:+.1f}%** (target within 10%: "
        f"{verdict(abs(first_change), 0.10)}) and CPU per token by **{cpu_change * 100:+.1f}%** (target within "
        f"+10%: {verdict(cpu_change, 0.10)}). Each visitor loads the page first, so they carry the owner cookie "
        f"and their conversations are kept; {kept} finished conversations were in the store after the run "
        f"({done} of {runs * users} replies complete through the store-on app).",
    )
