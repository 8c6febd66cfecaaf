"""Scenario 8: capacity: hundreds of users on one process, CPU per token, next to a plain relay."""

from __future__ import annotations

from bench.common import App, Figure, Report, cpu_seconds, crowd, percentile, server_stats, verdict


def capacity(report: Report, apps: dict[str, App], server_url: str, runs: int, levels: list[int], tokens: int):
    """Many users at once, ours next to the plain relay, each through a minimal asyncio client of their own."""
    text = f"bench:{tokens}:20"
    last_token = f"w{tokens - 1}"
    crowd(apps["relay"], 2, text, last_token)  # warm-up
    crowd(apps["capacity"], 2, text, last_token)
    results: dict[tuple[int, str], dict[str, Figure]] = {}
    for level in levels:
        for name in ("relay", "capacity"):
            app = apps[name]
            figures: dict[str, list[float]] = {}
            for _ in range(runs):
                server_stats(server_url)  # starts a new peak-of-open-streams count
                before = cpu_seconds(app.pid)
                wall, streams = crowd(app, level, text, last_token)
                used = cpu_seconds(app.pid) - before
                firsts, gaps = [s.first for s in streams], [s.worst_gap for s in streams]
                for key, value in (
                    ("wall", wall),
                    ("first p50", percentile(firsts, 0.5)),
                    ("first p99", percentile(firsts, 0.99)),
                    ("gap p50", percentile(gaps, 0.5)),
                    ("gap p99", percentile(gaps, 0.99)),
                    ("cpu", used / (level * tokens)),
                    ("updates", sum(len(s.updates) for s in streams) / level),
                    ("peak", server_stats(server_url)["peak_open_streams"]),
                    ("done", sum(s.complete for s in streams)),
                ):
                    figures.setdefault(key, []).append(value)
            results[level, name] = {key: Figure(values) for key, values in figures.items()}
    rows, notes = [], []
    for level in levels:
        relay, ours = results[level, "relay"], results[level, "capacity"]
        for label, f in (("plain relay", relay), ("**ours**", ours)):
            rows.append(
                f"| {level} | {label} | {f['wall'].s()} | {f['first p50'].ms()} | {f['first p99'].ms()} | "
                f"{f['gap p50'].ms()} | {f['gap p99'].ms()} | {f['cpu'].format(1e6, ' µs', 0)} | "
                f"{f['updates'].plain(digits=0)} | {f['peak'].plain(digits=0)} | "
                f"{f['done'].plain(digits=0)} of {level} |"
            )
        wall = ours["wall"].median / relay["wall"].median
        cpu = ours["cpu"].median / relay["cpu"].median
        first_p99 = ours["first p99"].median
        targets = []
        if level == 64:  # the README's targets for the default --concurrency
            targets.append(f"wall target <= 1.1: {verdict(wall, 1.1)}")
            targets.append(f"p99 first update target <= 1 s: {verdict(first_p99, 1.0)}")
        if level == 32:
            targets.append(f"CPU per token target <= 0.6 of the relay's: {verdict(cpu, 0.6)}")
        notes.append(
            f"- {level} users: ours / plain relay: wall **{wall:.2f}**, CPU per token **{cpu:.2f}**; "
            f"ours p99 first update {first_p99 * 1000:.0f} ms; "
            f"{ours['done'].median:.0f} of {level} replies complete" + "".join(f"; {t}" for t in targets)
        )
    report.add(
        f"8. Capacity: many users at once, each a {tokens}-token reply at 20 ms per token, each user through a "
        "minimal asyncio client of their own (not gradio_client)",
        "Ours runs with `--concurrency` at the highest level here, so none waits in the queue. "
        "Time to first update and the worst gap between updates are per reply, then p50/p99 over the replies; "
        "CPU per token is the app process's user + system time over every token relayed.\n\n"
        "| users | app | wall time | first update p50 | p99 | worst gap p50 | p99 | app CPU per token | "
        "updates per reply | upstream streams open at once | completed |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n\n"
        + "\n".join(notes),
    )
