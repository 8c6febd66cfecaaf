"""Scenario 1 and 2: one fast reply through each app (the relay's overhead), and the time to a first update."""

from __future__ import annotations

import asyncio
import time

import openai

from bench.common import App, Figure, Reply, Report, ask, verdict


def relay_and_first_token(report: Report, apps: dict[str, App], server_url: str, runs: int, tokens: int) -> None:
    big = f"bench:{tokens}:0"

    async def sdk_runs() -> list[float]:
        client = openai.AsyncOpenAI(base_url=server_url, api_key="bench-key")
        totals = []
        for index in range(runs + 1):
            start = time.perf_counter()
            async with await client.chat.completions.create(
                model="bench-model", messages=[{"role": "user", "content": big}], stream=True
            ) as stream:
                text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            if index:  # the first run warms the connection up
                totals.append(time.perf_counter() - start)
        assert text.count("w") == tokens
        return totals

    sdk = Figure(asyncio.run(sdk_runs()))
    for app in apps.values():
        ask(app, app.client, big)  # warm-up
    # Round-robin, so that anything else the machine does now and then hits every app alike.
    replies: dict[str, list[Reply]] = {name: [] for name in apps}
    for _ in range(runs):
        for name, app in apps.items():
            replies[name].append(ask(app, app.client, big))
    totals: dict[str, Figure] = {}
    for name in apps:
        assert all(r.text.count("w") >= tokens for r in replies[name]), f"{name} did not relay the whole reply"
        totals[name] = Figure([r.total for r in replies[name]])
        totals[name + " updates"] = Figure([r.updates for r in replies[name]])
    echo = totals["echo"].median

    def overhead(name: str) -> float:
        return (totals[name].median - echo) / sdk.median

    ours, peer = overhead("ours"), overhead("gr.load_chat")
    report.add(
        f"1. Relay: one reply of {tokens} tokens, sent as fast as the server can",
        "| | total | updates the client received |\n| --- | --- | --- |\n"
        f"| plain `openai` SDK (AsyncOpenAI, stream) | {sdk.ms()} | |\n"
        f"| echo ChatInterface (one yield, no provider) | {totals['echo'].ms()} | "
        f"{totals['echo updates'].plain(digits=0)} |\n"
        f"| **ours** | {totals['ours'].ms()} | {totals['ours updates'].plain(digits=0)} |\n"
        f"| `gr.load_chat` | {totals['gr.load_chat'].ms()} | {totals['gr.load_chat updates'].plain(digits=0)} |\n\n"
        f"Overhead = (app total - echo total) / plain SDK total, on medians: **ours {ours:.2f}** "
        f"(target <= 1.1: {verdict(ours, 1.1)}), `gr.load_chat` {peer:.2f}.",
    )

    small = "bench:20:20"  # a first token alone, then 19 more at 20 ms

    async def sdk_first_chunks() -> list[float]:
        """The provider's own share of a first update: the plain SDK's request to its first chunk."""
        client = openai.AsyncOpenAI(base_url=server_url, api_key="bench-key")
        firsts = []
        for index in range(runs + 1):
            start = time.perf_counter()
            async with await client.chat.completions.create(
                model="bench-model", messages=[{"role": "user", "content": small}], stream=True
            ) as stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        if index:  # the first run warms the connection up
                            firsts.append(time.perf_counter() - start)
                        break
        return firsts

    sdk_first = Figure(asyncio.run(sdk_first_chunks()))
    first_times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(runs):
        for name, app in apps.items():
            first_times[name].append(ask(app, app.client, small).first)
    firsts = {name: Figure(times) for name, times in first_times.items()}
    # The echo app has no provider: the baseline is echo plus the provider's own first chunk.
    baseline = firsts["echo"].median + sdk_first.median
    gap = (firsts["ours"].median - baseline) * 1000
    peer_gap = (firsts["gr.load_chat"].median - baseline) * 1000
    report.add(
        "2. First token: time from submit to the first update in the client",
        "| | time to first update |\n| --- | --- |\n"
        f"| plain `openai` SDK: request to first chunk (the provider's share) | {sdk_first.ms()} |\n"
        + "".join(f"| {name} | {firsts[name].ms()} |\n" for name in ("echo", "ours", "gr.load_chat"))
        + f"\nOurs minus (echo + the SDK's first chunk): **{gap:.1f} ms** (target <= 10 ms: {verdict(gap, 10)}); "
        f"`gr.load_chat` minus the same: {peer_gap:.1f} ms. The echo app answers with no provider, so the "
        "provider's time to a first chunk, measured with the plain SDK in the same run, is added to it.",
    )
