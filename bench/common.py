"""What every scenario shares: the apps as processes, clients that time them, figures and the report."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from gradio_client import Client

from config import chat_controls
from testkit.processes import DATA_HOME
from testkit.support import answer_text

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
    # Its default conversation store in a folder of its own (testkit's), not the user's data folder.
    data_home = {"XDG_DATA_HOME": tempfile.mkdtemp(dir=DATA_HOME.name)}
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **data_home, **(env or {})}
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


async def gradio_user(
    http: httpx.AsyncClient, url: str, fn_index: int, data: list, last_token: str, headers: dict | None = None
) -> Stream:
    """A user of a Gradio app through its queue protocol, as the browser speaks it."""
    session = uuid.uuid4().hex[:10]
    start = time.perf_counter()
    join = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    (await http.post(url + "gradio_api/queue/join", json=join, headers=headers)).raise_for_status()
    updates: list[float] = []
    for attempt in range(3):
        try:
            data_url = url + f"gradio_api/queue/data?session_hash={session}"
            async with http.stream("GET", data_url, headers=headers) as response:
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


def crowd(
    app: App, level: int, text: str, last_token: str, visitors: bool = False, owners: bool = False
) -> tuple[float, list[Stream]]:
    """`level` users sending `text` at once, each through a minimal client of their own: (wall time, their
    streams). visitors: the page is loaded first, as a browser does, and every user carries the owner cookie it
    set (so their conversations are kept); each is a tab of its own. owners: each user is a visitor of their own,
    with an owner cookie of their own (behind nginx, each is sent to the replica their cookie picks)."""
    fn_index = 0
    if not app.plain_relay:
        config = httpx.get(app.url + "config", timeout=10).json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == app.api_name.strip("/"))
    data = app.queue_data(text)

    async def everyone() -> list[Stream]:
        # Each user a client of their own, as each is a browser of their own. One client shared by hundreds of
        # users costs httpcore's pool CPU that grows with the square of its connections (at 256 users, more than
        # the app's own): the figures were then the load generator's. The TLS context is made once (loopback is
        # plain HTTP, but each client would build one, at 26 ms of CPU each).
        tls = ssl.create_default_context()
        cookies = None
        if visitors:
            async with httpx.AsyncClient(timeout=300, verify=tls) as page:
                (await page.get(app.url)).raise_for_status()  # the page sets the cookie; every user sends it
                cookies = page.cookies

        async def user() -> Stream:
            async with httpx.AsyncClient(timeout=300, verify=tls, cookies=cookies) as http:
                if app.plain_relay:
                    return await relay_user(http, app.url, text, last_token)
                return await gradio_user(http, app.url, fn_index, data, last_token, own_cookie() if owners else None)

        return await asyncio.gather(*(user() for _ in range(level)))

    start = time.perf_counter()
    streams = asyncio.run(everyone())
    return time.perf_counter() - start, streams


def own_cookie() -> dict[str, str]:
    """The header of a visitor with an owner cookie of their own (the form the app issues: pages.owners.issue)."""
    return {"Cookie": f"chat_owner={secrets.token_urlsafe(24)}"}


@dataclass
class SideBySide:
    """Per app (by name), one value a round: p50 time to first update, app CPU per token; and replies complete."""

    first: dict[str, Figure]
    cpu_per_token: dict[str, Figure]
    complete: dict[str, int]

    def change(self, figure: str, of: str, against: str) -> Change:
        """How much `of` differs from `against` in a figure ("first" or "cpu_per_token"), round by round."""
        figures = getattr(self, figure)
        return Change([a / b - 1 for a, b in zip(figures[of].values, figures[against].values, strict=True)])


# A cost smaller than one app's spread between rounds (the store's, the log's) is judged over this many times
# the usual runs, in rounds alternating the two apps.
CLOSE_CALL_ROUNDS = 5


def side_by_side(apps: dict[str, App], rounds: int, users: int, tokens: int, visitors: bool = False) -> SideBySide:
    """`users` at once, each a `tokens`-token reply at 20 ms a token, on each app in turn: `rounds` rounds after a
    warm-up, each app first in every other round, so that anything else the machine does (and whatever the app
    before leaves behind) hits every app alike, and each round gives a pair to compare."""
    text, last = f"bench:{tokens}:20", f"w{tokens - 1}"
    for app in apps.values():
        crowd(app, users, text, last, visitors=visitors)  # warm-up
    firsts: dict[str, list[float]] = {name: [] for name in apps}
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    complete = dict.fromkeys(apps, 0)
    order = list(apps.items())
    for number in range(rounds):
        for name, app in order if number % 2 == 0 else reversed(order):
            before = cpu_seconds(app.pid)
            _, streams = crowd(app, users, text, last, visitors=visitors)
            cpu[name].append((cpu_seconds(app.pid) - before) / (users * tokens))
            firsts[name].append(percentile([s.first for s in streams], 0.5))
            complete[name] += sum(s.complete for s in streams)
    return SideBySide(
        {name: Figure(values) for name, values in firsts.items()},
        {name: Figure(values) for name, values in cpu.items()},
        complete,
    )


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
class Change:
    """One app against another, round by round (each value a fraction: +0.05 is 5% more). Two apps' runs on a busy
    machine spread by more than the difference sought, so the verdict comes from the median of the rounds' changes
    and the range that holds the true median with the confidence given (order statistics, no assumed shape)."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def bounds(self) -> tuple[float, float, float]:
        """(low, high, confidence): the k-th smallest and k-th largest change, k the largest rank with at most 5%
        chance of the true median lying below it (and as much above), as the binomial distribution gives."""
        n, ranked = len(self.values), sorted(self.values)
        below = [math.comb(n, i) / 2**n for i in range(n + 1)]  # chance that exactly i changes fall below the median
        k = 1
        while k < n // 2 and sum(below[: k + 1]) <= 0.05:
            k += 1
        return ranked[k - 1], ranked[n - k], 1 - 2 * sum(below[:k])

    def text(self) -> str:
        low, high, confidence = self.bounds
        return (
            f"{self.median * 100:+.1f}% (median of {len(self.values)} round{'s' if len(self.values) > 1 else ''}; "
            f"{low * 100:+.1f}% to {high * 100:+.1f}% at {confidence * 100:.0f}% confidence)"
        )

    def verdict(self, most: float) -> str:
        """Against a ceiling on the change: met when the whole range is under it, not met when all of it is over."""
        low, high, _ = self.bounds
        return "met" if high <= most else "**not met**" if low > most else "too close to call"


@dataclass
class Report:
    sections: list[str] = field(default_factory=list)

    def add(self, title: str, text: str) -> None:
        print(f"\n## {title}\n{text}", flush=True)
        self.sections.append(f"## {title}\n\n{text}\n")
