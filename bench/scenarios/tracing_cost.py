"""Scenario 14: what exporting OpenTelemetry traces and metrics of every turn costs a reply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.common import ROOT, App, Report, side_by_side, verdict

TURNS = 2000  # traced turns per measurement of tracing's own CPU


def traced_turns(turns: int) -> float:
    """CPU seconds per turn (every thread of this process: the exporter's too) of what core.tracing does for a
    turn of one model request: its two spans with their attributes, the usage and duration recorded."""
    from core import tracing
    from core.events import Finish, GenerationParams, Usage
    from core.reply import Reply

    started = time.process_time()
    for n in range(turns):
        traced = tracing.TurnTrace("openai", "http://127.0.0.1:9/v1", f"conversation-{n}", str)
        reply = Reply()
        with traced.model_step([{"role": "user", "content": "Hi"}], GenerationParams(model="bench-model"), reply):
            for event in ("Hello", Usage(20, 200), Finish("stop", "bench-model")):
                reply.add(event)
            reply.finish()
        traced.end()
    return (time.process_time() - started) / turns


def own_cost(endpoint: str, turns: int) -> dict[str, float]:
    """Tracing's CPU per turn, off and then on (exporting to `endpoint`), best of three each, in a process of its
    own (configure() is once per process)."""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_MAX_QUEUE_SIZE": str(4 * turns)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.scenarios.tracing_cost", str(turns)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])


def tracing_cost(report: Report, on: App, off: App, endpoint: str, runs: int, users: int, tokens: int) -> None:
    """Tracing's own CPU per turn, and many users at once on the app with tracing on (exporting to a receiver in a
    process of its own) and off."""
    cost = own_cost(endpoint, TURNS)
    measured = side_by_side({"off": off, "on": on}, runs, users, tokens)
    first, per_token = measured.first, measured.cpu_per_token
    added = (cost["on"] - cost["off"]) / (per_token["off"].median * tokens)  # of a whole reply's CPU
    untraced = per_token["off"].values
    spread = "within the spread" if min(untraced) <= per_token["on"].median <= max(untraced) else "outside the range"
    report.add(
        f"14. Tracing: what OpenTelemetry (`OTEL_EXPORTER_OTLP_ENDPOINT` set) costs a turn, alone and {users} "
        "users at once",
        f"Tracing's own CPU per turn of one model request (its two spans and two metric records, exported over "
        f"OTLP/HTTP; {TURNS} turns, best of three, in a process of its own): **{cost['on'] * 1e6:.0f} µs** on, "
        f"{cost['off'] * 1e6:.0f} µs off. Against the app's CPU for a {tokens}-token reply with tracing off "
        f"({per_token['off'].format(1e6, ' µs', 0)} per token, below), it adds **{added * 100:+.2f}%** per token "
        f"(target within +5%: {verdict(added, 0.05)}).\n\n"
        f"| {users} users at once | first update p50 | app CPU per token |\n| --- | --- | --- |\n"
        f"| off (no `OTEL_*` variable) | {first['off'].ms()} | {per_token['off'].format(1e6, ' µs', 0)} |\n"
        f"| **on** | {first['on'].ms()} | {per_token['on'].format(1e6, ' µs', 0)} |\n\n"
        f"The two apps, alternating, differ by {measured.change('cpu_per_token', 'on', 'off').text()} in CPU "
        f"per token and {measured.change('first', 'on', 'off').text()} in first update p50; the traced app's "
        f"median CPU per token is {spread} of the untraced app's own runs. The verdict comes from the measurement "
        f"of tracing alone, which a busy machine moves less than it moves two apps' runs. The traced app "
        f"exports to a receiver on loopback that decodes what it gets "
        f"(`testkit/otlp_receiver.py`, a process of its own); {measured.complete['on']} of {runs * users} replies "
        f"complete through it.",
    )


if __name__ == "__main__":  # own_cost()'s process: off first, then configured
    count = int(sys.argv[1])
    off_cost = min(traced_turns(count) for _ in range(3))
    from core import tracing

    assert tracing.configure(), "no OTEL_EXPORTER_OTLP_ENDPOINT"
    on_cost = min(traced_turns(count) for _ in range(3))
    print(json.dumps({"off": off_cost, "on": on_cost}))
