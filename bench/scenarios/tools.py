"""Scenario 9: a multi-step tool turn through an MCP server, next to the plain SDK and MCP client."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import openai

from bench.common import ROOT, App, Figure, Report, ask, server_stats, verdict


def plain_tool_turn(server_url: str, mcp_server: list[str], env: dict[str, str], text: str, turns: int) -> list[float]:
    """The peer: the plain `openai` SDK and `mcp` Client in a hand-written loop, no UI; wall time per turn
    (from after the MCP server started)."""
    from mcp import Client, StdioServerParameters

    async def run() -> list[float]:
        llm = openai.AsyncOpenAI(base_url=server_url, api_key="bench-key")
        params = StdioServerParameters(command=sys.executable, args=mcp_server, cwd=str(ROOT), env=env)
        async with Client(params) as mcp:
            tools = [
                {"type": "function", "function": {"name": t.name, "description": t.description or "",
                 "parameters": t.input_schema}}
                for t in (await mcp.list_tools()).tools
            ]  # fmt: skip
            walls = []
            for _ in range(turns):
                start = time.perf_counter()
                messages: list[dict] = [{"role": "user", "content": text}]
                while True:
                    calls: dict[int, dict] = {}
                    content = ""
                    async with await llm.chat.completions.create(
                        model="bench-model", messages=messages, tools=tools, stream=True
                    ) as stream:
                        async for chunk in stream:
                            for choice in chunk.choices:
                                content += choice.delta.content or ""
                                for piece in choice.delta.tool_calls or ():
                                    call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                                    call["id"] = call["id"] or piece.id or ""
                                    call["name"] = call["name"] or (piece.function and piece.function.name) or ""
                                    call["arguments"] += (piece.function and piece.function.arguments) or ""
                    if not calls:
                        break
                    tool_calls = [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in calls.values()
                    ]
                    messages.append({"role": "assistant", "content": content, "tool_calls": tool_calls})
                    results = await asyncio.gather(
                        *(mcp.call_tool(c["name"], json.loads(c["arguments"])) for c in calls.values())
                    )
                    for call, result in zip(calls.values(), results, strict=True):
                        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result.content[0].text})
                walls.append(time.perf_counter() - start)
            await llm.close()
            return walls

    return asyncio.run(run())


def tool_steps(report: Report, ours: App, server_url: str, times: Path, runs: int, steps: int) -> None:
    """Per tool step, the time between the parts: the model's finished tool call -> the MCP server's tool
    starting, and the tool's end -> the next upstream request arriving. Both sides stamp time.monotonic()
    (system-wide), so differences across processes are exact to the microsecond."""
    tool_ms, tokens = 50, 20
    text = f"tools:{steps}:{tokens}:10:{tool_ms}"  # each step 20 tokens at 10 ms; each tool 50 ms

    def parts_of_last_turn() -> tuple[list[float], list[float], float, float]:
        """The gaps, the parts' time (upstream streams + tools), and the turn's span on the server's clock
        (first upstream request received -> last stream ended)."""
        streams = server_stats(server_url)["timeline"][-steps:]
        tools = [tuple(map(float, line.split())) for line in times.read_text().splitlines()[-(steps - 1) :]]
        to_call = [tool[0] - stream[1] for stream, tool in zip(streams, tools, strict=False)]
        to_next = [stream[0] - tool[1] for stream, tool in zip(streams[1:], tools, strict=True)]
        working = sum(end - start for start, end in streams) + sum(end - start for start, end in tools)
        return to_call, to_next, working, streams[-1][1] - streams[0][0]

    ask(ours, ours.client, text)  # warm-up: the first turn opens the connections
    to_call: list[float] = []
    to_next: list[float] = []
    ratios: list[float] = []
    client_ratios: list[float] = []
    walls: list[float] = []
    plain_ratios: list[float] = []
    plain_to_call: list[float] = []
    plain_to_next: list[float] = []
    mcp_args = ["-m", "testkit.mcp_tools_server"]
    mcp_env = {"MCP_TEST_TIMES": str(times)}
    for _ in range(runs):
        reply = ask(ours, ours.client, text)
        assert reply.text.count("w") == steps * tokens, reply.text
        calls, nexts, working, span = parts_of_last_turn()
        to_call += calls
        to_next += nexts
        walls.append(reply.total)
        ratios.append(span / working)
        client_ratios.append(reply.total / working)
        plain_tool_turn(server_url, mcp_args, mcp_env, text, 1)
        calls, nexts, working, span = parts_of_last_turn()
        plain_to_call += calls
        plain_to_next += nexts
        plain_ratios.append(span / working)
    call, following, ratio = Figure(to_call), Figure(to_next), Figure(ratios)
    plain_call, plain_next, plain_ratio = Figure(plain_to_call), Figure(plain_to_next), Figure(plain_ratios)
    report.add(
        f"9. Tool steps: a {steps}-step turn through an MCP server over stdio (`testkit/mcp_tools_server.py`), "
        f"each step {tokens} tokens at 10 ms, each tool {tool_ms} ms",
        "From the end of the model's tool-call stream to the tool starting in the MCP server (the app's parsing, "
        "its check of the arguments, the step shown, the JSON-RPC message through the pipe), and from the tool's "
        "end to the next upstream request arriving at the loopback server (the result back through the pipe, "
        "redaction, the next request built and sent). The turn's wall time is taken on the loopback server's clock, "
        "from the first upstream request arriving to the last stream's end, and divided by the sum of the upstream "
        "streams' and the tools' durations: what the steps cost beyond their parts. The client's own wall time "
        "(gradio_client, submit to the last update) adds Gradio's queue and session before the first request "
        "and the last update after, the same for a turn with no tools. The peer is the plain `openai` SDK and "
        "`mcp` Client in a hand-written loop (`plain_tool_turn` in `bench/run.py`), in the benchmark's process, "
        "with no UI.\n\n"
        "| | tool call -> tool starts | tool ends -> next request | turn wall / (upstream + tool time) | "
        "client wall / (upstream + tool time) |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"| plain SDK + MCP loop | {plain_call.ms()} | {plain_next.ms()} | {plain_ratio.format(digits=3)} | |\n"
        f"| **ours** | {call.ms()} | {following.ms()} | {ratio.format(digits=3)} | "
        f"{Figure(client_ratios).format(digits=3)} |\n\n"
        f"Ours: per step, tool call -> tool **{call.median * 1000:.1f} ms** (target <= 5 ms: "
        f"{verdict(call.median, 0.005)}), tool -> next request **{following.median * 1000:.1f} ms** (target <= 5 ms: "
        f"{verdict(following.median, 0.005)}); a {steps}-step turn's wall time **{ratio.median:.3f}x** its parts "
        f"(target <= 1.05: {verdict(ratio.median, 1.05)}); wall {Figure(walls).s()}.",
    )
