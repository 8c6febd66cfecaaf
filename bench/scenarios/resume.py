"""Scenario 11: a reply resumed after its connection drops, with many replies streaming through /api/chat."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx

from bench.common import App, Figure, Report, percentile, server_stats, verdict

TOKENS, DELAY_MS = 200, 20  # a 4 s reply: the drop and the reconnect come mid-reply


async def deltas(response: httpx.Response):
    """The text-delta chunks of a UI message stream, as they arrive."""
    async for line in response.aiter_lines():
        if line.startswith("data: {"):
            chunk = json.loads(line[6:])
            if chunk["type"] == "text-delta":
                yield chunk["delta"]


async def dropped_and_resumed(http: httpx.AsyncClient, url: str) -> tuple[float, str]:
    """One user: the request dropped after 3 deltas (a reload), then the chat's stream asked for again.
    Returns the seconds from that request to the reply so far arriving, and the whole text it then gave."""
    chat = uuid.uuid4().hex
    asked_for = {"type": "text", "text": f"bench:{TOKENS}:{DELAY_MS}"}
    body = {"id": chat, "messages": [{"id": "u", "role": "user", "parts": [asked_for]}]}
    async with http.stream("POST", url + "api/chat", json=body) as response:
        seen = 0
        async for _ in deltas(response):
            seen += 1
            if seen == 3:
                break  # leaving the block closes the connection
    asked = time.perf_counter()
    first, text = None, ""
    async with http.stream("GET", url + f"api/chat/{chat}/stream") as response:
        async for delta in deltas(response):
            first = first or time.perf_counter() - asked
            text += delta
    return (first if first is not None else float("inf")), text


def resume(report: Report, app: App, server_url: str, runs: int, users: int) -> None:
    expected = "".join(f"w{i} " for i in range(TOKENS))

    async def everyone() -> list[tuple[float, str]]:
        limits = httpx.Limits(max_connections=users * 4, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            return await asyncio.gather(*(dropped_and_resumed(http, app.url) for _ in range(users)))

    asyncio.run(everyone())  # warm-up
    p50s, p99s, whole, started, cut = [], [], 0, 0, 0
    for _ in range(runs):
        before = server_stats(server_url)
        results = asyncio.run(everyone())
        after = server_stats(server_url)
        latencies = [first for first, _ in results]
        p50s.append(percentile(latencies, 0.5))
        p99s.append(percentile(latencies, 0.99))
        whole += sum(text == expected for _, text in results)
        started += after["streams_started"] - before["streams_started"]
        cut += len(after["closed_early"]) - len(before["closed_early"])
    p50, p99 = Figure(p50s), Figure(p99s)
    report.add(
        f"11. Resume: {users} replies streaming through `/api/chat`, each client dropping its connection after 3 "
        "deltas (a reload) and asking for the chat's stream again (`GET /api/chat/{id}/stream`)",
        "| | from the reconnect to the reply so far, p50 | p99 | replies whole (exactly the provider's text) | "
        "upstream requests | upstream streams cut |\n| --- | --- | --- | --- | --- | --- |\n"
        f"| ours | {p50.ms()} | {p99.ms()} | {whole} of {runs * users} | {started} for {runs * users} replies | "
        f"{cut} |\n\n"
        f"Target p99 < 1 s with {users} replies streaming: {verdict(p99.median, 1.0)}. The plain SDK and "
        "`gr.load_chat` have no way back to a reply: a dropped connection loses it (and, in `gr.load_chat`, "
        "cancels it).",
    )
