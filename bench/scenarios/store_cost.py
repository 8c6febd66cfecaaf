"""Scenario 12: what keeping conversations on the server (the default store) costs a reply."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
import threading
from pathlib import Path

from bench.common import CLOSE_CALL_ROUNDS, App, Report, crowd, side_by_side, verdict

# Where the store's own work happens: anything in storage/logs.py (the writer thread, the reads of a page load),
# and the saves a streaming reply makes (chat.service builds each record).
STORE_FRAMES = ("(storage/logs.py:", "._saver.<locals>.save (chat/service.py:")


def store_cost(report: Report, on: App, off: App, store_db: Path, runs: int, users: int, tokens: int) -> None:
    """Many visitors at once (with the owner cookie, so their conversations are kept), store on and off, in
    CLOSE_CALL_ROUNDS times the usual rounds; and the store's own share of the store-on app's CPU, profiled under
    the same load."""
    rounds = CLOSE_CALL_ROUNDS * runs
    measured = side_by_side({"off": off, "on": on}, rounds, users, tokens, visitors=True)
    share = profiled_share(on, users, tokens)
    with sqlite3.connect(store_db) as db:
        kept = db.execute("SELECT count(*) FROM chat_conversations WHERE status = 'done'").fetchone()[0]
    first, per_token, done = measured.first, measured.cpu_per_token, measured.complete["on"]
    first_change = measured.change("first", "on", "off")
    cpu_change = measured.change("cpu_per_token", "on", "off")
    profiled = (
        f"Profiled in the store-on app under the same load (py-spy, 200 samples a second of every busy thread, "
        f"{users} visitors at once), the store's own work (its writer thread, its reads, the saves each streaming "
        f"reply makes) is {share[0] * 100:.1f}% of the app's CPU samples ({share[1]} of {share[2]}), so it adds "
        f"**{share[0] / (1 - share[0]) * 100:+.1f}%** CPU per token (target within +10%: "
        f"{verdict(share[0] / (1 - share[0]), 0.10)}): this verdict comes from the profile, which the machine's "
        f"other work moves less than it moves two apps' rounds."
        if isinstance(share, tuple)
        else f"The store's own share of the CPU was not profiled: {share}."
    )
    report.add(
        f"12. Conversation store: {users} visitors at once with the store on (the default, SQLite) and `--store off`",
        f"| | first update p50 | app CPU per token |\n| --- | --- | --- |\n"
        f"| `--store off` | {first['off'].ms()} | {per_token['off'].format(1e6, ' µs', 0)} |\n"
        f"| **store on** | {first['on'].ms()} | {per_token['on'].format(1e6, ' µs', 0)} |\n\n"
        f"The two apps ran in turn, {rounds} rounds, each first in every other round. Round by round, the store "
        f"changes the p50 time to first update by **{first_change.text()}** (target at most +10%: "
        f"{first_change.verdict(0.10)}) and CPU per token by {cpu_change.text()}. "
        f"{profiled} Each visitor loads the page first, so they carry the owner cookie and their conversations are "
        f"kept; {kept} finished conversations were in the store after the run ({done} of {rounds * users} replies "
        f"complete through the store-on app).",
    )


def profiled_share(app: App, users: int, tokens: int, rounds: int = 3) -> tuple[float, int, int] | str:
    """The share of the app's CPU samples (py-spy, its threads while busy) inside the store's own frames, over
    `rounds` crowds: (share, store samples, all samples); or why it could not be measured."""
    spy = shutil.which("py-spy")
    if spy is None:
        return "py-spy is not installed (pip install -r requirements-dev.txt)"
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as folder:
        out = Path(folder) / "samples.txt"
        command = [spy, "record", "-p", str(app.pid), "-f", "raw", "-o", str(out), "-r", "200", "--nonblocking"]
        recording = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Event().wait(1.0)  # py-spy attaches
        for _ in range(rounds):
            crowd(app, users, f"bench:{tokens}:20", f"w{tokens - 1}", visitors=True)
        recording.send_signal(2)  # SIGINT: py-spy writes what it sampled, then exits
        _, errors = recording.communicate(timeout=60)
        if not out.exists():
            return f"py-spy wrote nothing ({errors.strip().splitlines()[-1] if errors.strip() else 'no reason given'})"
        total = store = 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            total += int(count)
            store += int(count) if any(frame in stack for frame in STORE_FRAMES) else 0
    return (store / total, store, total) if total else "py-spy took no samples"
