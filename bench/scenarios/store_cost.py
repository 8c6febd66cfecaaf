"""Scenario 12: what keeping conversations on the server (the default store) costs a reply."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.common import App, Figure, Report, cpu_seconds, crowd, percentile, verdict


def store_cost(report: Report, on: App, off: App, store_db: Path, runs: int, users: int, tokens: int) -> None:
    """Many visitors at once (with the owner cookie, so their conversations are kept), store on and off."""
    text, last = f"bench:{tokens}:20", f"w{tokens - 1}"
    for app in (off, on):
        crowd(app, users, text, last, visitors=True)  # warm-up
    firsts: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    done = 0
    for _ in range(runs):  # alternating, so that anything else the machine does hits both alike
        for name, app in (("off", off), ("on", on)):
            before = cpu_seconds(app.pid)
            _, streams = crowd(app, users, text, last, visitors=True)
            cpu[name].append((cpu_seconds(app.pid) - before) / (users * tokens))
            firsts[name].append(percentile([s.first for s in streams], 0.5))
            done += sum(s.complete for s in streams) if name == "on" else 0
    with sqlite3.connect(store_db) as db:
        kept = db.execute("SELECT count(*) FROM chat_conversations WHERE status = 'done'").fetchone()[0]
    first = {name: Figure(values) for name, values in firsts.items()}
    per_token = {name: Figure(values) for name, values in cpu.items()}
    first_change = first["on"].median / first["off"].median - 1
    cpu_change = per_token["on"].median / per_token["off"].median - 1
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
