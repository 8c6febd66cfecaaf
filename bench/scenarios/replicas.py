"""Scenario 15: replicas behind nginx (deploy/replicas.py) on one PostgreSQL, beside one process and the relay."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import OUR_SETTINGS, App, Figure, Report, cpu_seconds, crowd, percentile, process
from deploy.replicas import serving
from testkit.processes import free_port


def replica_pids(supervisor: int) -> list[int]:
    """The app processes deploy/replicas.py (this pid) has running."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):  # gone meanwhile
            continue
        if parent == supervisor and b"app.py" in command:
            found.append(int(stat.parent.name))
    return sorted(found)


@contextmanager
def deployed(count: int, store: str, env: dict[str, str], most: int) -> Iterator[tuple[App, list[int], list[int]]]:
    """deploy/replicas.py with `count` replicas, each with room for `most` users; yields nginx's app, the replicas'
    ports and their pids."""
    port = free_port(following=count)
    flags = ["--concurrency", str(most), "--queue-size", str(2 * most)]
    args = ["deploy/replicas.py", "--replicas", str(count), "--port", str(port), "--store", store, *flags]
    ports = [port + n for n in range(1, count + 1)]
    # nginx's config and logs in a folder removed afterwards (the command's default folder is left in place).
    # Waited for at the replicas, not through nginx, which would answer 502 meanwhile.
    with (
        tempfile.TemporaryDirectory(prefix="bench-nginx-") as folder,
        process([*args, "--folder", folder], ports[0], env) as supervisor,
    ):
        if not all(serving(replica) for replica in ports):
            raise RuntimeError("a replica did not start")
        pids = replica_pids(supervisor.pid)
        assert len(pids) == count, pids
        yield App(f"http://127.0.0.1:{port}/", pid=supervisor.pid, settings=OUR_SETTINGS), ports, pids


def measured(app: App, pids: list[int], level: int, tokens: int, runs: int) -> dict[str, Figure]:
    """`runs` crowds of `level` users (each with an owner cookie of their own) on `app`: the figures of each."""
    text, last = f"bench:{tokens}:20", f"w{tokens - 1}"
    figures: dict[str, list[float]] = {}
    for _ in range(runs):
        before = [cpu_seconds(pid) for pid in pids]
        wall, streams = crowd(app, level, text, last, owners=not app.plain_relay)
        each = [cpu_seconds(pid) - earlier for pid, earlier in zip(pids, before, strict=True)]
        used = sum(each)
        firsts = [s.first for s in streams]
        for key, value in (
            ("wall", wall),
            ("first p50", percentile(firsts, 0.5)),
            ("first p99", percentile(firsts, 0.99)),
            ("gap p50", percentile([s.worst_gap for s in streams], 0.5)),
            ("cpu", used / (level * tokens)),
            ("done", sum(s.complete for s in streams)),
            ("busiest", max(each) / used if used else 1.0),  # the share of the work the busiest process did
        ):
            figures.setdefault(key, []).append(value)
    return {key: Figure(values) for key, values in figures.items()}


def replicas(
    report: Report,
    store: str,
    env: dict[str, str],
    relay: App,
    runs: int,
    levels: list[int],
    hop_users: int,
    tokens: int,
) -> None:
    """One app process and two replicas behind nginx, both on one PostgreSQL, next to the plain relay, at each level;
    and what the nginx hop costs: one replica behind nginx against the same replica reached directly."""
    text, last, most = f"bench:{tokens}:20", f"w{tokens - 1}", max(levels)
    one_port = free_port()
    flags = ["--port", str(one_port), "--store", store, "--concurrency", str(most), "--queue-size", str(2 * most)]
    rows, notes = [], []
    with process(["app.py", *flags], one_port, env) as single_proc:
        single = App(f"http://127.0.0.1:{one_port}/", pid=single_proc.pid, settings=OUR_SETTINGS)
        with deployed(2, store, env, most) as (nginx, _, pids):
            for app in (relay, single, nginx):
                crowd(app, 2, text, last, owners=not app.plain_relay)  # warm-up
            for level in levels:
                results = {
                    "plain relay": measured(relay, [relay.pid], level, tokens, runs),
                    "one process": measured(single, [single.pid], level, tokens, runs),
                    "**2 replicas + nginx**": measured(nginx, pids, level, tokens, runs),
                }
                for label, f in results.items():
                    rows.append(
                        f"| {level} | {label} | {f['wall'].s()} | {f['first p50'].ms()} | {f['first p99'].ms()} | "
                        f"{f['gap p50'].ms()} | {f['cpu'].format(1e6, ' µs', 0)} | {f['done'].plain(digits=0)} of "
                        f"{level} |"
                    )
                two, one = results["**2 replicas + nginx**"], results["one process"]
                p99 = two["first p99"].median
                target = f"; target p99 <= 2.5 s: {'met' if p99 <= 2.5 else '**not met**'}" if level == 256 else ""
                notes.append(
                    f"- {level} users: p99 first update **{p99:.2f} s** with 2 replicas, "
                    f"{one['first p99'].median:.2f} s with one process{target}; the busier replica did "
                    f"{two['busiest'].median * 100:.0f}% of the replicas' CPU work"
                )
    with deployed(1, store, env, hop_users) as (nginx, ports, pids):
        direct = App(f"http://127.0.0.1:{ports[0]}/", pid=pids[0], settings=OUR_SETTINGS)
        for app in (direct, nginx):
            crowd(app, 2, text, last, owners=True)  # warm-up
        hop = {
            name: measured(app, pids, hop_users, tokens, runs)
            for name, app in {"direct": direct, "nginx": nginx}.items()
        }
    change = hop["nginx"]["first p50"].median - hop["direct"]["first p50"].median
    report.add(
        f"15. Replicas: one process against 2 replicas behind nginx (`deploy/replicas.py`), both on one PostgreSQL, "
        f"each user a {tokens}-token reply at 20 ms per token with an owner cookie of their own",
        "CPU per token adds up every app process (nginx's own is not counted). On 2 cores the replicas share the "
        "machine with the load generator, the provider and PostgreSQL.\n\n"
        "| users | app | wall time | first update p50 | p99 | worst gap p50 | app CPU per token | completed |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n\n"
        + "\n".join(notes)
        + f"\n\nThe nginx hop at {hop_users} users (one replica, reached through nginx and directly): first "
        f"update p50 {hop['nginx']['first p50'].ms()} against {hop['direct']['first p50'].ms()} "
        f"(**{change * 1000:+.1f} ms**), wall {hop['nginx']['wall'].s()} against {hop['direct']['wall'].s()}.",
    )
