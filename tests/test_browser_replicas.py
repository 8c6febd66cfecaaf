"""Replicas behind nginx on one database, started by deploy/replicas.py as the README runs it: a visitor stays on
one replica (a browser, and gradio_client, which keeps no cookie); when it dies mid-reply, their next page load
is served by another, with the conversation intact and the cut reply shown as interrupted, and they stay there once
the first is back. In Debian's chromium through Playwright; nginx is Debian's."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from chat.service import INTERRUPTED
from deploy.replicas import serving as replicas_serving
from storage.logs import SILENT, conversations, database_url
from testkit.browser import Chat, browser, cut_reply_retried, expect  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.processes import ROOT, base_env, free_port
from testkit.support import SENTINEL_KEY, ask, emptied, missing

STARTED = re.compile(r"Replica on 127\.0\.0\.1:(\d+) started \(pid (\d+)\)")
CUT = INTERRUPTED.split(".")[0]  # its first sentence, as the page shows it
LONG = "Hello there! " + " ".join(f"word{i}" for i in range(200))  # 10 s


@dataclass
class Replicas:
    """deploy/replicas.py running: nginx's URL, its folder (config and logs), and each replica's pid by port."""

    url: str
    folder: Path
    output: list[str] = field(default_factory=list)

    def pids(self) -> dict[int, int]:
        """The latest pid of each replica, by its port."""
        return {int(port): int(pid) for line in self.output for port, pid in STARTED.findall(line)}

    def serving(self, request: str) -> int:
        """The port of the replica that served the last request starting with `request` (nginx's access log)."""
        lines = [line for line in (self.folder / "access.log").read_text().splitlines() if f'"{request}' in line]
        return int(lines[-1].rsplit(":", 1)[1])


@contextlib.contextmanager
def replicas_running(store: str, fake_server: FakeOpenAI, folder: Path, count: int = 2) -> Iterator[Replicas]:
    if shutil.which("nginx", path=f"{os.environ['PATH']}:/usr/sbin") is None:
        missing("no nginx: `apt-get install -y nginx` (tests/install.sh does) to run the replica tests")
    port = free_port(following=count)  # the replicas take the ports after nginx's
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    command = [sys.executable, "deploy/replicas.py", "--replicas", str(count), "--port", str(port)]
    command += ["--store", store, "--folder", str(folder), "--model", "fake-model", "--timeout", "2"]
    supervisor = subprocess.Popen(
        command, cwd=ROOT, env=env | {"PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    running = Replicas(f"http://127.0.0.1:{port}/", folder)
    reader = threading.Thread(target=lambda: running.output.extend(supervisor.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("Serving " in line for line in running.output):  # the replicas write to the same pipe
            assert time.monotonic() < deadline and supervisor.poll() is None, "".join(running.output)
            time.sleep(0.2)
        yield running
    finally:
        supervisor.send_signal(signal.SIGTERM)  # it ends nginx and the replicas it started
        try:
            supervisor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
        reader.join(timeout=5)
        for pid in running.pids().values():  # none should be left; if one is, it ends here, by its id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print("".join(running.output))


def status_of(store: str, question: str) -> str | None:
    """The stored status of the conversation whose title is `question`."""
    engine = sa.create_engine(database_url(store))
    try:
        with engine.connect() as connection:
            query = sa.select(conversations.c.status).where(conversations.c.title == question)
            return connection.execute(query).scalar()
    finally:
        engine.dispose()


@pytest.mark.timeout(240)
def test_a_replica_killed_mid_reply_leaves_its_visitor_to_another_with_the_conversation_and_the_cut_reply(
    browser, fake_server: FakeOpenAI, postgres_url: str, tmp_path: Path
):
    store = emptied(postgres_url)
    fake_server.reset()
    with replicas_running(store, fake_server, tmp_path / "nginx") as replicas:
        tab = Chat(browser, replicas.url, watch_requests=False)
        try:
            tab.send("first")
            expect(tab.bots.last).to_have_text("Echo: first")
            tab.wait_for_reply()
            fake_server.default = Reply(text=LONG, delay=0.05)
            tab.send("second, cut")
            expect(tab.bots.last).to_contain_text("word60")  # 3 s in: past a save (every 2 s), 7 s before the end
            serving = replicas.serving("POST /gradio_api/queue/join")
            other = next(port for port in replicas.pids() if port != serving)
            os.kill(replicas.pids()[serving], signal.SIGKILL)  # the replica dies mid-reply
            killed = time.monotonic()

            tab.page.reload()  # the next page load: the other replica serves it, from the database
            expect(tab.users).to_have_text(["first", "second, cut"])
            expect(tab.bots.first).to_have_text("Echo: first")  # no finished turn is lost
            assert replicas.serving("GET / ") == other
            # The cut reply is marked interrupted once its replica has been silent for SILENT seconds (or as the
            # supervisor starts it again under its name): the page, watching it through the store, shows it so.
            expect(tab.bots.last).to_contain_text(CUT, timeout=(SILENT + 20) * 1000)
            assert status_of(store, "first") == "interrupted" and time.monotonic() - killed < SILENT + 20
            tab.page.reload()  # and so does a reload
            expect(tab.bots.last).to_contain_text(CUT)
            # The supervisor starts the killed replica again. The page stays with the replica that holds its
            # session (its cookie names it): Retry, sent once the first is back, is served there.
            assert replicas_serving(serving, timeout=90)
            cut_reply_retried(tab, fake_server, ["first", "Echo: first", "second, cut"], "Hello there! word0 word1")
            assert replicas.serving("POST /gradio_api/queue/join") == other
        finally:
            tab.close()


@pytest.mark.timeout(180)
def test_gradio_client_through_nginx_keeps_each_call_and_its_conversation_on_one_replica(
    fake_server: FakeOpenAI, tmp_path: Path
):
    """gradio_client sends no owner cookie: its queue/join and queue/data still reach one replica (an empty
    routing key would be round robin between them: "session not found", a call that never ends)."""
    from gradio_client import Client

    with replicas_running(str(tmp_path / "chats.db"), fake_server, tmp_path / "nginx") as replicas:
        for visitor in range(4):
            client = Client(replicas.url, verbose=False)
            assert ask(client, f"first {visitor}") == f"Echo: first {visitor}"
            assert ask(client, f"second {visitor}") == f"Echo: second {visitor}"
            sent = [m["content"] for m in fake_server.chat_requests[-1].body["messages"] if m["role"] != "system"]
            assert sent == [f"first {visitor}", f"Echo: first {visitor}", f"second {visitor}"]  # its history too
        log = (replicas.folder / "access.log").read_text().splitlines()
        calls = [line for line in log if "/gradio_api/queue/" in line]
        assert len(calls) >= 16 and len({line.rsplit("upstream=", 1)[1] for line in calls}) == 1


@pytest.mark.timeout(120)
def test_replicas_that_cannot_start_end_the_command_with_their_reason(tmp_path: Path):
    """A replica that exits at start (here a flag it refuses) ends deploy/replicas.py at once, with the replica's
    own sentence and nginx stopped, rather than a wait for it to answer."""
    if shutil.which("nginx", path=f"{os.environ['PATH']}:/usr/sbin") is None:
        missing("no nginx: `apt-get install -y nginx` (tests/install.sh does) to run the replica tests")
    port = free_port(following=2)
    command = [sys.executable, "deploy/replicas.py", "--replicas", "2", "--port", str(port)]
    command += ["--store", "sqlite:///chats.db", "--folder", str(tmp_path / "nginx")]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=base_env(port), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=90)  # fmt: skip
    assert done.returncode == 1
    assert "not a sqlite:// URL" in done.stderr and "A replica did not start" in done.stderr
    assert time.monotonic() - started < 60  # it waited for no replica that had exited
    assert not (tmp_path / "nginx" / "nginx.pid").exists()  # nginx removes its pid file as it stops
