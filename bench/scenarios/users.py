"""Scenario 3: many users at once, each a paced reply."""

from __future__ import annotations

from bench.common import App, Figure, Report, ask, crowd, many_at_once, verdict


def many_users(report: Report, apps: dict[str, App], runs: int, levels: list[int], tokens: int, peer_level: int):
    message = f"bench:{tokens}:20"
    alone = Figure([ask(apps["ours"], apps["ours"].client, message).total for _ in range(runs)])
    rows = []
    notes = []
    for level in levels:
        for name in ("echo", "ours", "gr.load_chat"):
            if name == "gr.load_chat" and level != peer_level:
                continue
            app = apps[name]
            clients = [app.new_client() for _ in range(level)]
            peer_runs = 1 if name == "gr.load_chat" else runs  # it serialises: one run takes minutes
            walls, worst_firsts = [], []
            for _ in range(peer_runs):
                replies = many_at_once(app, clients, message)
                assert len(replies) == level and all(r.text.count("w") >= tokens for r in replies), name
                walls.append(max(r.start + r.total for r in replies) - min(r.start for r in replies))
                worst_firsts.append(max(r.first for r in replies))
            rows.append((level, name, Figure(walls), Figure(worst_firsts)))
    table = "| users | app | wall time | worst first update |\n| --- | --- | --- | --- |\n" + "".join(
        f"| {level} | {name} | {wall.s()} | {first.ms()} |\n" for level, name, wall, first in rows
    )
    for level in levels:
        ours = next(r for r in rows if r[0] == level and r[1] == "ours")
        echo = next(r for r in rows if r[0] == level and r[1] == "echo")
        wall_ratio = ours[2].median / alone.median
        first_ratio = ours[3].median / echo[3].median
        notes.append(
            f"- {level} users: wall / one user's = **{wall_ratio:.2f}** (target <= 1.25: {verdict(wall_ratio, 1.25)}); "
            f"worst first update / echo's = **{first_ratio:.2f}** (target <= 1.5: {verdict(first_ratio, 1.5)})"
        )
    raw_rows = []
    last_token = f"w{tokens - 1}"
    for level in levels:
        for name in ("echo", "ours"):
            results = [crowd(apps[name], level, message, last_token)[1] for _ in range(runs)]
            assert all(s.complete for streams in results for s in streams), f"{name} left a reply unfinished"
            walls = Figure([max(s.total for s in streams) for streams in results])
            firsts = Figure([max(s.first for s in streams) for streams in results])
            raw_rows.append(f"| {level} | {name} | {walls.s()} | {firsts.ms()} |")
    raw_alone = Figure([crowd(apps["ours"], 1, message, last_token)[1][0].total for _ in range(runs)])
    report.add(
        f"3. Many users: each a {tokens}-token reply at 20 ms per token, all sent at once",
        f"One user alone (ours): {alone.s()}.\n\n{table}\n"
        + "\n".join(notes)
        + f"\n\n`gr.load_chat` was run once, at {peer_level} users only: it serves one reply at a time, "
        "so each run takes minutes.\n\n"
        "The same users through a minimal asyncio SSE client instead of gradio_client, which separates the "
        f"client's cost from the app's (ours, one user alone: {raw_alone.s()}):\n\n"
        "| users | app | wall time | worst first update |\n| --- | --- | --- | --- |\n" + "\n".join(raw_rows),
    )
