"""The conversation log (--log-db) against real databases: SQLite files and a PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from gradio_client import Client

from config import ConfigError, load_settings
from core.history import text_of
from pages.owners import COOKIE, issue
from storage.logs import (
    ConversationRecord,
    LogStore,
    conversations,
    database_url,
    newest_schema,
    now,
    turns,
    votes,
    where,
)
from storage.recorder import Recorder
from testkit.cutting_proxy import CuttingProxy
from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.processes import ROOT, base_env, free_port, spawn, wait_until_serving
from testkit.support import SENTINEL_KEY, ask, emptied, launched, logged_turns, remote_settings, submit

TABLES = {
    "alembic_version",
    "chat_turns",
    "chat_votes",
    "chat_conversations",
    "chat_replicas",
    "chat_sends",
    "chat_signins",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def log_target(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "chats.db")
    return emptied(request.getfixturevalue("postgres_url"))


@pytest.fixture
def logged_app(fake_server: FakeOpenAI, log_target: str) -> Iterator[tuple[str, LogStore]]:
    fake_server.reset()
    store = LogStore(database_url(log_target)).open()
    try:
        with launched(remote_settings(fake_server, log_db=log_target), hub=None, store=store) as url:
            yield url, store
    finally:
        store.close()


def test_every_turn_is_logged_once_with_its_config_and_never_the_key(logged_app, fake_server: FakeOpenAI):
    url, store = logged_app
    client = Client(url, verbose=False)
    assert ask(client, "first question") == "Echo: first question"
    assert ask(client, "second question", "Be brief.", 0.3, 200, 0.9) == "Echo: second question"
    fake_server.enqueue(Reply(status=500))
    ask(client, "this one fails")
    store.flush()
    rows = list(reversed(store.find()))
    assert [(r["message"], r["status"], r["ordinal"]) for r in rows] == [
        ("first question", "done", 0),
        ("second question", "done", 1),
        ("this one fails", "error", 2),
    ]
    assert len({r["conversation"] for r in rows}) == 1 and len({r["id"] for r in rows}) == 3
    second = rows[1]
    assert second["reply"] == "Echo: second question"
    assert second["config"]["system_prompt"] == "Be brief."
    assert (second["config"]["temperature"], second["config"]["max_tokens"], second["config"]["top_p"]) == (
        0.3,
        200,
        0.9,
    )
    assert second["config"]["model"] == "fake-model" and second["config"]["app_version"]
    assert second["telemetry"]["prompt_tokens"] and "s to first token" in second["telemetry"]["stats"]
    assert "server error (500)" in rows[2]["notice"]
    assert SENTINEL_KEY not in json.dumps([dict(r) for r in rows], default=str)

    other = Client(url, verbose=False)  # another browser: another conversation
    ask(other, "hello")
    store.flush()
    assert len({r["conversation"] for r in store.find()}) == 2


def test_a_stopped_turn_is_logged_as_stopped_with_its_partial_reply(logged_app, fake_server: FakeOpenAI):
    url, store = logged_app
    fake_server.default = Reply(text=" ".join(f"w{i}" for i in range(200)), delay=0.05)
    client = Client(url, verbose=False)
    job = submit(client, "talk")
    assert fake_server.wait_for(lambda: fake_server.streams_started == 1)
    time.sleep(0.5)
    job.cancel()
    assert fake_server.wait_for(lambda: fake_server.closed_early, timeout=5)
    [row] = logged_turns(store)
    assert row["status"] == "stopped" and row["reply"].startswith("w0 w1") and len(row["reply"]) < 600


def test_tool_steps_are_logged(fake_server: FakeOpenAI, tmp_path: Path, log_target: str):
    from testkit.support import stdio_server
    from tools.hub import ToolHub

    fake_server.reset()
    hub = ToolHub([stdio_server(tmp_path / "calls.log")])
    hub.start()
    store = LogStore(database_url(log_target)).open()
    try:
        with launched(remote_settings(fake_server, log_db=log_target), hub=hub, store=store) as url:
            fake_server.enqueue(
                Reply(text="", tool_calls=[ToolCall("echo", '{"text": "logged"}', "c")]), Reply(text="Done.")
            )
            ask(Client(url, verbose=False), "use the tool")
            store.flush()
            [row] = store.find()
            assert row["tool_steps"] == [
                {"id": "c", "name": "echo", "arguments": '{"text": "logged"}', "result": "logged", "status": "done",
                 "seconds": row["tool_steps"][0]["seconds"]}
            ]  # fmt: skip
            assert row["reply"] == "Done." and row["telemetry"]["steps"] == 2
    finally:
        hub.close()
        store.close()


def test_feedback_rates_only_turns_of_the_session_that_sends_it(log_target: str):
    """The like event maps a message index to a turn through the sender's own session (Gradio's session
    hash, which the API and the browser send); another session's index rates nothing."""
    from core.reply import Reply as ShownReply
    from core.turn import Step, Turn

    store = LogStore(database_url(log_target)).open()
    recorder = Recorder(store)
    history: list[dict] = []
    for text in ("one", "two"):
        turn = Turn(steps=[Step(ShownReply(text=f"re: {text}"))], ended=True)
        recorder.turn("alice", history, {"text": text, "files": []}, turn, {"model": "m"})
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": f"re: {text}"}]
    assert recorder.feedback("mallory", history, 3, False) is None  # not mallory's turns
    rated = recorder.feedback("alice", history, 3, False)  # the reply to "two"
    assert recorder.comment("alice", "  too short  ")
    assert not recorder.comment("mallory", "spam")
    store.flush()
    rows = {r["message"]: r for r in store.find()}
    assert rows["two"]["id"] == rated and rows["two"]["feedback"] == -1 and rows["two"]["comment"] == "too short"
    assert rows["one"]["feedback"] is None and rows["one"]["comment"] is None
    store.close()


def a_log_from_before_alembic(url: sa.URL, version: int) -> None:
    """A log as the app's hand-written migrations left it at `version` (schema 1: no comment column),
    with one rated turn."""
    old = sa.MetaData()
    meta = sa.Table(
        "chat_meta", old, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.String(255))
    )
    for table in (turns, votes):  # the tables of those schemas
        columns = [
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=c.index)
            for c in table.columns
            if version > 1 or c.name != "comment"
        ]
        sa.Table(table.name, old, *columns)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        old.create_all(connection)
        connection.execute(meta.insert().values(key="schema_version", value=str(version)))
        when = now()
        connection.execute(
            old.tables["chat_turns"].insert().values(
                id="t1", conversation="c1", session="s", ordinal=0, started=when, ended=when, status="done",
                model="old-model", message="hi", attachments=[], reply="hello", thinking="", tool_steps=[],
                config={}, telemetry={}, notice="", feedback=1,
            )
        )  # fmt: skip
    engine.dispose()


def tables_and_revision(url: sa.URL) -> tuple[set[str], str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        names = set(sa.inspect(connection).get_table_names())
        revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    return names, revision


@pytest.mark.parametrize(("version", "revision"), [(1, "0001"), (2, "0002")])
def test_a_log_from_before_alembic_is_upgraded_and_keeps_its_turns(log_target: str, version: int, revision: str):
    """Schema 1 (the first release) and schema 2 (what --log-db wrote until Alembic took over)."""
    url = database_url(log_target)
    a_log_from_before_alembic(url, version)
    store = LogStore(url).open()
    assert store.problem is None and store.found_schema == revision
    [old] = store.find()
    assert (old["message"], old["feedback"], old["comment"]) == ("hi", 1, None)
    store.set_comment("t1", "now commented")
    store.flush()
    assert store.find()[0]["comment"] == "now commented"
    store.close()
    assert tables_and_revision(url) == (TABLES, newest_schema())
    again = LogStore(url).open()  # opening an upgraded log changes nothing
    assert again.problem is None and again.found_schema == newest_schema() and len(again.find()) == 1
    again.close()


def test_a_new_log_is_made_by_the_migrations(log_target: str):
    url = database_url(log_target)
    store = LogStore(url).open()
    assert store.problem is None and store.found_schema is None
    store.close()
    names, revision = tables_and_revision(url)
    assert names == TABLES and revision == newest_schema()
    engine = sa.create_engine(url)
    with engine.connect() as connection:  # the migrations make what the code declares
        made = {c["name"] for c in sa.inspect(connection).get_columns("chat_turns")}
        indexes = {i["name"] for i in sa.inspect(connection).get_indexes("chat_turns")}
        kept = {c["name"] for c in sa.inspect(connection).get_columns("chat_conversations")}
        found = sa.inspect(connection).get_indexes("chat_conversations")
        listed = {(i["name"], tuple(i["column_names"])) for i in found}
    engine.dispose()
    assert made == {c.name for c in turns.columns}
    assert indexes == {f"ix_chat_turns_{c.name}" for c in turns.columns if c.index}
    assert kept == {c.name for c in conversations.columns}
    assert listed == {(i.name, tuple(c.name for c in i.columns)) for i in conversations.indexes}


def test_a_log_from_a_newer_app_is_left_alone_with_one_sentence(log_target: str):
    url = database_url(log_target)
    LogStore(url).open().close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    store = LogStore(url).open()
    assert store.problem == "the log was written by a newer version of the app (schema 0999); update the app"
    store.close()
    assert tables_and_revision(url)[1] == "0999"


def test_retention_deletes_old_conversations(log_target: str):
    from datetime import timedelta

    url = database_url(log_target)
    store = LogStore(url).open()
    for name, age in (("old", 40), ("recent", 2)):
        with store.engine.begin() as connection:
            when = now() - timedelta(days=age)
            connection.execute(
                turns.insert().values(
                    id=name, conversation=name, session="s", ordinal=0, started=when, ended=when, status="done",
                    model="m", message=name, attachments=[], reply="", thinking="", tool_steps=[], config={},
                    telemetry={}, notice="",
                )
            )  # fmt: skip
            connection.execute(
                votes.insert().values(id=name, session="s", created=when, message=name, a={}, b={}, vote="a")
            )
    store.close()
    store = LogStore(url, retention_days=30).open()
    store.add_vote("s2", "new", {"model": "x"}, {"model": "y"}, "tie")
    store.flush()
    assert [r["message"] for r in store.find()] == ["recent"]
    assert [(v["message"], v["vote"]) for v in store.all_votes()] == [("recent", "a"), ("new", "tie")]
    assert store.all_votes()[1]["a"] == {"model": "x"}
    store.close()


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("/no/such/folder/chats.db", "--log-db the folder /no/such/folder does not exist."),
        ("mysql://localhost/chats", "--log-db takes a file path (SQLite) or a postgresql:// URL, not a mysql:// URL."),
        ("postgresql://localhost", "--log-db needs a database name at the end of the URL"),
    ],
)
def test_a_bad_log_db_stops_startup_with_one_sentence(target: str, says: str):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_settings(["--log-db", target], {})


def test_an_unreachable_database_costs_one_log_line_per_turn_and_the_chat_goes_on(
    fake_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
):
    fake_server.reset()
    target = f"postgresql://chat@127.0.0.1:{free_port()}/chats"  # nothing listens there
    store = LogStore(database_url(target)).open()
    assert store.problem and "connect" in store.problem.lower()
    try:
        with (
            caplog.at_level(logging.ERROR, logger="chat.log"),
            launched(remote_settings(fake_server, log_db=target), store=store) as url,
        ):
            client = Client(url, verbose=False)
            for text in ("one", "two", "three"):
                assert ask(client, text) == f"Echo: {text}"
            store.flush(timeout=30)
            lines = [r.getMessage() for r in caplog.records if r.name == "chat.log"]
            assert len(lines) == 3 and all("Could not write to the conversation log" in line for line in lines)
            assert "127.0.0.1" in lines[0] and SENTINEL_KEY not in "".join(lines)
    finally:
        store.close()


def test_check_says_when_the_log_cannot_be_written(fake_server: FakeOpenAI):
    env = base_env(free_port()) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    target = f"postgresql://chat@127.0.0.1:{free_port()}/chats"
    run = subprocess.run(
        [sys.executable, "app.py", "--check", "--model", "fake-model", "--log-db", target],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert f"  ✗ Conversation log: cannot write to {target} now (" in run.stdout
    assert "the chat goes on, and retries each turn" in run.stdout


def test_sigkill_mid_stream_keeps_every_finished_turn_and_the_log_opens(fake_server: FakeOpenAI, log_target: str):
    fake_server.reset()
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    output: list[str] = []
    proc, lines = spawn(env, "--model", "fake-model", "--log-db", log_target, "--rate-limit", "0")
    try:
        wait_until_serving(proc, lines, output)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for text in ("one", "two", "three"):
            assert ask(client, text) == f"Echo: {text}"
        fake_server.default = Reply(text=" ".join(f"w{i}" for i in range(400)), delay=0.05)
        submit(client, "four, never finished")
        assert fake_server.wait_for(lambda: fake_server.streams_started == 4)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if "://" not in log_target:
        with sqlite3.connect(log_target) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = LogStore(database_url(log_target)).open()
    rows = sorted((r["ordinal"], r["message"], r["status"]) for r in store.find())
    store.close()
    assert rows == [(0, "one", "done"), (1, "two", "done"), (2, "three", "done")]


def test_export_log_writes_openai_chat_jsonl(tmp_path: Path, fake_server: FakeOpenAI, log_target: str):
    fake_server.reset()
    target = log_target
    store = LogStore(database_url(target)).open()
    with launched(remote_settings(fake_server, log_db=target), store=store) as url:
        client = Client(url, verbose=False)
        ask(client, "first")
        ask(client, "second", "Be brief.")
    store.add_vote("s", "Which is better?", {"model": "m1", "reply": "one"}, {"model": "m2", "reply": "two"}, "b")
    store.close()
    out = tmp_path / "out.jsonl"
    run = subprocess.run(
        [sys.executable, "app.py", "--log-db", target, "--export-log", str(out)],
        cwd=ROOT, env=base_env(free_port()), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"Exported 2 turns from {where(database_url(target))} to {out}." in run.stdout
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert first["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
    ]
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "Echo: second"},
    ]
    assert second["metadata"]["model"] == "fake-model" and second["metadata"]["feedback"] is None
    assert second["metadata"]["settings"]["temperature"] == 0.7
    assert f"Exported 1 compare vote to {tmp_path / 'out.votes.jsonl'}." in run.stdout
    [vote] = (json.loads(line) for line in (tmp_path / "out.votes.jsonl").read_text().splitlines())
    assert (vote["message"], vote["vote"], vote["a"]["model"], vote["b"]["reply"]) == (
        "Which is better?",
        "b",
        "m1",
        "two",
    )


def test_the_page_says_conversations_are_recorded(logged_app):
    import httpx

    url, _ = logged_app
    assert "Conversations on this demo are recorded" in httpx.get(url + "config").text


def test_a_chat_session_carries_only_the_chat_the_workbench_pages_are_apps_of_their_own(logged_app):
    """Gradio gives each new session every component of its app: the workbench pages are apps mounted beside
    the chat, so a chat visitor's page holds none of theirs (with them as routes of the chat, 32 new visitors
    waited 58% longer for a first update)."""
    import httpx

    url, _ = logged_app
    chat, review, compare = (httpx.get(url + path).json() for path in ("config", "review/config", "compare/config"))
    ids = {name: {c["props"].get("elem_id") for c in config["components"]} for name, config in
           (("chat", chat), ("review", review), ("compare", compare))}  # fmt: skip
    assert {"compare-a", "compare-b"} <= ids["compare"] and "review-login-status" in ids["review"]
    assert not {"compare-a", "compare-b", "review-login-status"} & ids["chat"]
    assert [page[0] for page in chat["pages"]] == [""]  # the chat's app has one page, its own
    assert "[Review](review/) · [Compare](compare/)" in str(chat["components"])  # linked from the chat


def test_review_shows_tool_arguments_and_results_as_text_not_html():
    from pages.review import conversation_messages

    form = "<form action='http://other.example/steal'><button>Go</button></form>"
    turn = {
        "message": "use the tool", "attachments": [], "thinking": "", "reply": "Done.", "notice": "",
        "status": "done", "model": "m", "feedback": None, "comment": None, "telemetry": {},
        "tool_steps": [
            {"name": "web", "arguments": '{"q": 1}', "result": f"{form}\n```\nstill inside", "status": "done"}
        ],
    }  # fmt: skip
    [step] = [m for m in conversation_messages([turn]) if m.get("metadata", {}).get("title") == "Tool: web"]
    result = step["content"].split("Result:\n", 1)[1]
    fence = result.split("\n", 1)[0]
    assert set(fence) == {"`"} and len(fence) > 3  # a fence longer than any run of backticks inside
    assert result == f"{fence}\n{form}\n```\nstill inside\n{fence}"  # the HTML is inside it: shown, not rendered


def test_a_postgresql_outage_loses_no_turn_and_the_review_page_says_the_database_is_unreachable(
    postgres_url: str, fake_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
):
    from pages.review import reading

    emptied(postgres_url)
    with CuttingProxy(sa.make_url(postgres_url).port) as relay:
        target = postgres_url.replace(f":{sa.make_url(postgres_url).port}/", f":{relay.port}/")
        store = LogStore(database_url(target)).open()
        assert store.problem is None
        try:
            with launched(remote_settings(fake_server, log_db=target), store=store) as url:
                client = Client(url, verbose=False)
                assert ask(client, "before") == "Echo: before"
                store.flush()
                relay.cut()  # PostgreSQL goes away
                with caplog.at_level(logging.ERROR, logger="chat.log"):
                    for text in ("during 1", "during 2", "during 3"):
                        assert ask(client, text) == f"Echo: {text}"  # the chat goes on
                    store.flush(timeout=30)
                assert len([r for r in caplog.records if r.name == "chat.log"]) == 3  # one line a turn
                with pytest.raises(Exception, match="its database is unreachable"):
                    reading(store.find)()
                relay.restore()  # back: what waited is written, in order
                deadline = time.monotonic() + 30
                while len(rows := store.find()) < 4:
                    assert time.monotonic() < deadline, rows
                    time.sleep(0.5)
        finally:
            store.close()
    assert sorted((r["ordinal"], r["message"]) for r in rows) == [
        (0, "before"), (1, "during 1"), (2, "during 2"), (3, "during 3")
    ]  # fmt: skip


def conversation(owner: str, number: int, messages: list | None = None, status: str = "done") -> ConversationRecord:
    at = now()
    shown = messages or [{"role": "user", "content": f"question {number}"}, {"role": "assistant", "content": "answer"}]
    return ConversationRecord(f"c-{owner}-{number}", owner, f"question {number}", at, at, status, shown)


def test_conversations_are_kept_for_their_owner_only_listed_newest_first_and_deleted(log_target: str):
    store = LogStore(database_url(log_target)).open()
    try:
        for number in range(3):
            store.save_conversation(conversation("ada", number))
        store.save_conversation(conversation("bob", 0))
        store.flush()
        assert [c["title"] for c in store.owned("ada")] == ["question 2", "question 1", "question 0"]
        assert store.opened("ada", "c-ada-1")["messages"][0] == {"role": "user", "content": "question 1"}
        assert store.opened("bob", "c-ada-1") is None  # another owner's id opens nothing
        grown = [{"role": "user", "content": "question 0"}, {"role": "assistant", "content": "more"}]
        longer = conversation("ada", 0, grown)
        store.save_conversation(longer)  # the same conversation, grown: replaced, now the newest
        store.delete_conversation("bob", "c-ada-2")  # not bob's: nothing happens
        store.delete_conversation("ada", "c-ada-1")
        store.flush()
        assert [c["id"] for c in store.owned("ada")] == ["c-ada-0", "c-ada-2"]
        assert store.opened("ada", "c-ada-0")["messages"][1]["content"] == "more"
        engine = sa.create_engine(database_url(log_target))
        with engine.connect() as connection:  # the deleted one's row is gone from the database
            ids = set(connection.execute(sa.select(conversations.c.id)).scalars())
        engine.dispose()
        assert ids == {"c-ada-0", "c-ada-2", "c-bob-0"}
    finally:
        store.close()


def test_a_reply_streaming_when_the_app_stopped_is_marked_interrupted_with_its_partial_text(log_target: str):
    store = LogStore(database_url(log_target)).open()
    partial = [{"role": "user", "content": "talk"}, {"role": "assistant", "content": "w0 w1"}]
    store.save_conversation(conversation("ada", 0, partial, status="streaming"))
    store.close()  # as if the process had died: nobody finished it
    again = LogStore(database_url(log_target)).open()
    try:
        again.flush()
        found = again.opened("ada", "c-ada-0")
        assert (found["status"], found["messages"]) == ("interrupted", partial)
    finally:
        again.close()


def test_a_held_save_is_read_at_once_and_written_with_the_next(log_target: str):
    store = LogStore(database_url(log_target)).open()
    engine = sa.create_engine(database_url(log_target))

    def written() -> list[tuple[str, str]]:
        store.flush()
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(sa.select(conversations.c.id, conversations.c.status))]

    try:
        started = [{"role": "user", "content": "talk"}, {"role": "assistant", "content": "w0"}]
        store.save_conversation(conversation("ada", 0, started, status="streaming"), write=False)  # a reply's first
        assert [c["id"] for c in store.owned("ada")] == ["c-ada-0"]  # this process's reads have it
        assert store.opened("ada", "c-ada-0")["messages"] == started and store.opened("bob", "c-ada-0") is None
        assert written() == []  # the database has not
        grown = [started[0], {"role": "assistant", "content": "w0 w1"}]
        store.save_conversation(conversation("ada", 0, grown, status="streaming"))
        assert written() == [("c-ada-0", "streaming")]
        assert store.opened("ada", "c-ada-0")["messages"] == grown
        store.save_conversation(conversation("ada", 1, status="streaming"), write=False)
        store.delete_conversation("ada", "c-ada-1")  # deleted while held: nothing of it is written, then or later
        store.save_conversation(conversation("ada", 0))
        assert written() == [("c-ada-0", "done")] and [c["id"] for c in store.owned("ada")] == ["c-ada-0"]
    finally:
        engine.dispose()
        store.close()


def test_saves_of_one_conversation_waiting_for_the_database_are_merged(log_target: str):
    store = LogStore(database_url(log_target))
    store.problem = "not opened"  # the writer is not started: every save waits
    for words in range(1, 200):
        grown = [{"role": "user", "content": "talk"}, {"role": "assistant", "content": "w " * words}]
        store.save_conversation(conversation("ada", 0, grown, status="streaming"))
    assert store._queue.qsize() == 1 and len(store._newest) == 1  # one write waits, the newest
    store.open()
    try:
        store.flush()
        assert store.opened("ada", "c-ada-0")["messages"][1]["content"] == "w " * 199
    finally:
        store.close()


def test_reads_see_the_saves_and_deletions_still_waiting_for_the_writer(log_target: str):
    store = LogStore(database_url(log_target)).open()
    gate = threading.Event()
    store._queue.put(lambda connection: gate.wait(10))  # the writer is busy: every write waits
    try:
        store.save_conversation(conversation("ada", 0))
        store.save_conversation(conversation("ada", 1))
        store.save_conversation(conversation("bob", 0))
        assert [c["id"] for c in store.owned("ada")] == ["c-ada-1", "c-ada-0"]  # newest first, before any write
        assert store.opened("ada", "c-ada-1")["title"] == "question 1"
        assert store.opened("bob", "c-ada-1") is None  # another owner's still opens nothing
        store.delete_conversation("bob", "c-ada-0")  # not bob's: nothing happens, not even for a moment
        assert [c["id"] for c in store.owned("ada")] == ["c-ada-1", "c-ada-0"]
        assert store.opened("ada", "c-ada-0") is not None
        store.delete_conversation("ada", "c-ada-0")
        assert [c["id"] for c in store.owned("ada")] == ["c-ada-1"]
        assert store.opened("ada", "c-ada-0") is None
        gate.set()
        store.flush()
        assert [c["id"] for c in store.owned("ada")] == ["c-ada-1"]  # as written
        assert [c["id"] for c in store.owned("bob")] == ["c-bob-0"]
    finally:
        store.close()


def stored_status(target: str) -> dict[str, tuple[str, list]]:
    """Each conversation's status and messages in the database (not what waits to be written), read directly."""
    engine = sa.create_engine(database_url(target))
    try:
        with engine.connect() as db:
            rows = db.execute(sa.select(conversations.c.id, conversations.c.status, conversations.c.messages))
            return {id: (status, messages) for id, status, messages in rows}
    finally:
        engine.dispose()


def test_a_save_made_while_the_last_one_is_written_is_written_before_the_app_stops(log_target: str):
    """A reply's last save ("done", with the calls waiting for Run) came while its previous save was being
    written, and the app stopped right after: the last save was queued behind the stop and lost."""
    store = LogStore(database_url(log_target)).open()
    writing, go_on = threading.Event(), threading.Event()

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def held(_connection, _cursor, statement: str, *_args) -> None:  # the writer, in the middle of a save
        if statement.startswith("UPDATE chat_conversations") and not go_on.is_set():
            writing.set()
            go_on.wait(10)

    streaming = [{"role": "user", "content": "talk"}, {"role": "assistant", "content": "w0"}]
    ended = [{"role": "user", "content": "talk"}, {"role": "assistant", "content": "w0 w1 w2"}]
    store.save_conversation(conversation("ada", 0, streaming, status="streaming"))
    assert writing.wait(10)
    store.save_conversation(conversation("ada", 0, ended))
    go_on.set()
    store.close()  # as the app stops
    assert stored_status(log_target) == {"c-ada-0": ("done", ended)}


def test_a_save_whose_commit_failed_is_written_when_it_is_tried_again(log_target: str):
    store = LogStore(database_url(log_target)).open()
    failures = [sa.exc.OperationalError("COMMIT", {}, Exception("the server closed the connection"))]

    @sa.event.listens_for(store.engine, "commit")
    def fail_once(_connection) -> None:
        if failures:
            raise failures.pop()

    try:
        store.save_conversation(conversation("ada", 0))
        deadline = time.monotonic() + 30  # tried again every RETRY_SECONDS
        while "c-ada-0" not in stored_status(log_target) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not failures and stored_status(log_target)["c-ada-0"][0] == "done"
    finally:
        store.close()


def test_replies_streaming_in_this_process_stay_streaming_when_the_database_comes_back(log_target: str):
    """Only the replies the last run of the app left streaming are interrupted: once, as it starts."""
    streaming = [{"role": "user", "content": "talk"}, {"role": "assistant", "content": "w0"}]
    with an_outage(log_target) as (target, cut, restore):
        store = LogStore(database_url(target)).open()
        try:
            store.save_conversation(conversation("ada", 0, streaming, status="streaming"))
            store.flush()
            cut()
            store.save_conversation(conversation("ada", 1))  # waits for the database
            store.flush()
            restore()
            deadline = time.monotonic() + 30  # tried again every RETRY_SECONDS
            while "c-ada-1" not in stored_status(log_target) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert stored_status(log_target)["c-ada-0"][0] == "streaming"  # its reply goes on here
        finally:
            store.close()


@contextlib.contextmanager
def an_outage(log_target: str) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """The target to open the store on, and how to make its database unwritable and writable again: a
    PostgreSQL server gone (every connection cut, new ones refused), or a SQLite file another process holds
    locked for writing."""
    if log_target.startswith("postgresql"):
        port = sa.make_url(log_target).port
        with CuttingProxy(port) as relay:
            yield log_target.replace(f":{port}/", f":{relay.port}/"), relay.cut, relay.restore
        return
    holder = sqlite3.connect(log_target, isolation_level=None, timeout=0)
    try:
        yield log_target, lambda: holder.execute("BEGIN EXCLUSIVE"), lambda: holder.execute("ROLLBACK")
    finally:
        holder.close()


def written(target: str) -> list[str]:
    """The texts of the one conversation in the database (not what waits to be written), read directly."""
    engine = sa.create_engine(database_url(target))
    try:
        with engine.connect() as db:
            [messages] = db.execute(sa.select(conversations.c.messages)).scalars().all()
    finally:
        engine.dispose()
    return [text for m in messages if (text := text_of(m["content"]))]


@pytest.mark.timeout(180)
def test_a_conversation_saved_while_the_database_cannot_be_written_streams_whole_and_is_written_later(
    fake_server: FakeOpenAI, log_target: str, caplog: pytest.LogCaptureFixture
):
    fake_server.reset()
    words = [f"word{n} " for n in range(30)]
    with an_outage(log_target) as (target, cut, restore):
        store = LogStore(database_url(target)).open()
        try:
            with launched(remote_settings(fake_server), store=store) as url:
                visitor = Client(url, verbose=False, headers={"Cookie": f"{COOKIE}={issue()}"})  # one who returns
                assert ask(visitor, "before") == "Echo: before"
                store.flush()
                cut()
                fake_server.enqueue(Reply(tokens=words, delay=0.15))  # 4.5 s: saved as it streams, too
                with caplog.at_level(logging.ERROR, logger="chat.log"):
                    assert ask(visitor, "during") == "".join(words)  # the reply streams, whole
                    store.flush(timeout=30)
                lines = [r.getMessage() for r in caplog.records if r.name == "chat.log"]
                assert len(lines) == 1 and "Could not write to the conversation log" in lines[0], lines
                assert SENTINEL_KEY not in lines[0]
                assert written(log_target) == ["before", "Echo: before"]  # the turn during the outage: not yet
                restore()  # writable again: what waited is written
                deadline = time.monotonic() + 30
                while len(kept := written(log_target)) < 4 and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert kept == ["before", "Echo: before", "during", "".join(words)]
        finally:
            store.close()


def test_conversations_that_cannot_be_read_are_one_sentence_and_a_reply_streams(
    postgres_url: str, fake_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
):
    from chat.service import UNREACHABLE, Caller, ChatService, Refused
    from providers.registry import create_backend

    fake_server.reset()
    emptied(postgres_url)
    settings = remote_settings(fake_server)
    ada = Caller("page:visitor-ada", "127.0.0.1", returns=True, owner="page:visitor-ada")

    async def reply(service: ChatService, text: str, history: list[dict]) -> str:
        conversation = service.conversation_for(ada, "tab", history)
        run = service.start({"text": text, "files": []}, history, "fake-model", {}, ada, conversation=conversation)
        async for _ in run.follow():
            pass
        answer = [m for m in run.messages() if m["role"] == "assistant" and not (m.get("metadata") or {}).get("title")]
        return "".join(text_of(m["content"]) for m in answer)

    async def scenario(store: LogStore, cut: Callable[[], None], restore: Callable[[], None]) -> None:
        before = ChatService(settings, create_backend(settings), ["fake-model"], store=store)
        assert await reply(before, "Sailing", []) == "Echo: Sailing"
        [(_, sailing)] = (await before.listed(ada, "tab")).conversations
        store.flush()
        cut()  # PostgreSQL goes away; a restarted app (a new service) knows nothing of ada's conversations
        after = ChatService(settings, create_backend(settings), ["fake-model"], store=store)
        with caplog.at_level(logging.ERROR, logger="chat.log"):
            assert await after.reopen(ada, "tab") is None  # the page loads with a new chat, no error
            for reading in (after.listed(ada, "tab"), after.open(ada, "tab", sailing)):
                with pytest.raises(Refused, match=re.escape(UNREACHABLE)):
                    await reading
            assert await reply(after, "Baking", []) == "Echo: Baking"  # a reply streams all the same
        lines = [r.getMessage() for r in caplog.records if r.name == "chat.log"]
        said = ("Could not read the conversations from ", "Could not write to the conversation log ")  # its save
        assert any(line.startswith(said[0]) for line in lines) and all(line.startswith(said) for line in lines)
        restore()
        store.flush(timeout=30)
        listed = (await after.listed(ada, "tab")).conversations
        assert [title for title, _ in listed] == ["Baking", "Sailing"]  # what waited is written

    with an_outage(postgres_url) as (target, cut, restore):
        store = LogStore(database_url(target)).open()
        try:
            asyncio.run(scenario(store, cut, restore))
        finally:
            store.close()


def test_rate_limits_hold_across_replicas_on_one_postgresql(fake_server: FakeOpenAI, postgres_url: str):
    """Two apps on one PostgreSQL store (two replicas) count each address's messages together."""
    url = database_url(emptied(postgres_url))
    stores = [LogStore(url, replica=f"replica-{n}").open() for n in (1, 2)]
    try:
        settings = remote_settings(fake_server, rate_limit_session=2, rate_limit_ip=3)
        with launched(settings, store=stores[0]) as one, launched(settings, store=stores[1]) as two:
            first, second = Client(one, verbose=False), Client(two, verbose=False)
            assert ask(first, "one") == "Echo: one"
            assert ask(second, "two") == "Echo: two"
            assert ask(first, "three") == "Echo: three"
            assert "faster than this demo allows" in ask(second, "four")  # the address's 4th, on either replica
            assert "faster than this demo allows" in ask(first, "five")  # and its session's 3rd (2 a minute)
        assert [r.body["messages"][-1]["content"] for r in fake_server.chat_requests] == ["one", "two", "three"]
        assert all(store.shared for store in stores)
    finally:
        for store in stores:
            store.close()


def test_a_replica_marks_interrupted_only_its_own_last_run_and_silent_replicas_replies(
    log_target: str, monkeypatch: pytest.MonkeyPatch
):
    """A replica starting again interrupts what it was streaming; another replica's streaming reply stays
    streaming while that replica beats, and is interrupted once it has been silent for SILENT seconds."""
    beat, silent = 0.3, 3.0  # the app's 2 s and 6 s, shorter (1.5 s was too short once, in a slow CI run)
    monkeypatch.setattr("storage.logs.HEARTBEAT", beat)
    monkeypatch.setattr("storage.logs.SILENT", silent)
    streaming = [{"role": "user", "content": "talk"}, {"role": "assistant", "content": "w0"}]
    one = LogStore(database_url(log_target), replica="one").open()
    two = LogStore(database_url(log_target), replica="two").open()
    try:
        one.save_conversation(conversation("ada", 0, streaming, status="streaming"))
        two.save_conversation(conversation("ada", 1, streaming, status="streaming"))
        one.flush()
        two.flush()
        again = LogStore(database_url(log_target), replica="one").open()  # "one" restarted (beside itself)
        again.flush()
        assert stored_status(log_target)["c-ada-0"][0] == "interrupted"  # its last run's
        assert stored_status(log_target)["c-ada-1"][0] == "streaming"  # "two" is alive
        again.close()
        one.close()
        time.sleep(silent + beat * 2)  # "two" still beats
        assert stored_status(log_target)["c-ada-1"][0] == "streaming"
    finally:
        two.close()  # now "two" falls silent: another replica interrupts its reply
    watcher = LogStore(database_url(log_target), replica="three").open()
    try:
        deadline = time.monotonic() + silent + beat * 10
        while stored_status(log_target)["c-ada-1"][0] != "interrupted" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stored_status(log_target)["c-ada-1"][0] == "interrupted"
    finally:
        watcher.close()


def test_replicas_opening_a_new_postgresql_database_at_once_migrate_it_once(postgres_url: str):
    """Replicas start together (deploy/replicas.py): each opens the store, one migrates, none fails."""
    url = database_url(emptied(postgres_url))
    stores = [LogStore(url, replica=f"replica-{n}") for n in range(4)]
    opening = [threading.Thread(target=store.open) for store in stores]
    for thread in opening:
        thread.start()
    for thread in opening:
        thread.join(timeout=60)
    try:
        assert [store.problem for store in stores] == [None] * 4
        assert tables_and_revision(url) == (TABLES, newest_schema())
    finally:
        for store in stores:
            store.close()
