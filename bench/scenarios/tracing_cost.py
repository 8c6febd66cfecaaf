"""Scenario 14: what exporting OpenTelemetry traces and metrics of every turn costs a reply."""

from __future__ import annotations

from bench.common import App, Report, side_by_side, verdict


def tracing_cost(report: Report, on: App, off: App, runs: int, users: int, tokens: int) -> None:
    """Many users at once on the app with tracing on (exporting to a receiver in its own process) and off."""
    measured = side_by_side({"off": off, "on": on}, runs, users, tokens)
    first, per_token = measured.first, measured.cpu_per_token
    first_change = measured.change("first", "on", "off")
    cpu_change = measured.change("cpu_per_token", "on", "off")
    report.add(
        f"14. Tracing: {users} users at once with OpenTelemetry on (`OTEL_EXPORTER_OTLP_ENDPOINT` set) and off",
        f"| | first update p50 | app CPU per token |\n| --- | --- | --- |\n"
        f"| off (no `OTEL_*` variable) | {first['off'].ms()} | {per_token['off'].format(1e6, ' µs', 0)} |\n"
        f"| **on** | {first['on'].ms()} | {per_token['on'].format(1e6, ' µs', 0)} |\n\n"
        f"Tracing changes CPU per token by **{cpu_change * 100:+.1f}%** (target within +5%: "
        f"{verdict(cpu_change, 0.05)}) and the p50 time to first update by {first_change * 100:+.1f}%. "
        f"Each turn exports two spans (the turn's and its one request's) and two metrics, batched, over OTLP/HTTP to "
        f"a receiver on loopback that decodes them (`testkit/otlp_receiver.py`, a process of its own); "
        f"{measured.complete['on']} of {runs * users} replies complete through the traced app.",
    )
