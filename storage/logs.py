"""The conversation log (--log-db): SQLite or PostgreSQL through SQLAlchemy, written by one background thread."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from core.guards import RateLimiter

log = logging.getLogger("chat.log")
MIGRATIONS = Path(__file__).parent / "migrations"
Job = Callable[[Connection], None]  # one write, run by the writer thread in a transaction
MAX_PENDING = 10_000  # writes kept in memory while the database is down; past it the oldest are dropped
RETRY_SECONDS = 5.0  # how often waiting writes are tried again
HEARTBEAT = 2.0  # seconds between a process's heartbeats in the database
SILENT = 6.0  # a process not heard from for this long has stopped: its streaming replies are interrupted
MIGRATION_LOCK = 0x43484154  # PostgreSQL's advisory lock that one migration at a time holds ("CHAT")

metadata = sa.MetaData()  # the tables as the newest migration leaves them (storage/migrations)
turns = sa.Table(
    "chat_turns",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("conversation", sa.String(36), nullable=False, index=True),
    sa.Column("session", sa.String(64), nullable=False),
    sa.Column("ordinal", sa.Integer, nullable=False),  # the turn's place in its conversation, from 0
    sa.Column("started", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("ended", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # done, stopped, error, waiting (for Run or Skip)
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("attachments", sa.JSON, nullable=False),  # file names
    sa.Column("reply", sa.Text, nullable=False),
    sa.Column("thinking", sa.Text, nullable=False),
    sa.Column("tool_steps", sa.JSON, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),  # provider, base URL, model, parameters, system prompt, version
    sa.Column("telemetry", sa.JSON, nullable=False),
    sa.Column("notice", sa.Text, nullable=False),  # what went wrong, if anything
    sa.Column("feedback", sa.Integer),  # 1 thumbs up, -1 down, None not rated
    sa.Column("comment", sa.Text),  # added by migration 0002
)
conversations = sa.Table(  # added by migration 0004
    "chat_conversations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # "page:user-<login>", "page:visitor-<hash of its cookie>", "page:hf-<account id>"; "api:..." for /api/chat's
    sa.Column("owner", sa.String(80), nullable=False),
    sa.Column("title", sa.Text, nullable=False),  # from the first message
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    # done, streaming, stopped, interrupted (the app died); indexed by migration 0007, for the reaper
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("messages", sa.JSON, nullable=False),  # the chat's messages as the page shows them
    # Added by migration 0005: its tool results by record, and its calls waiting for Run or Skip (chat.service).
    sa.Column("state", sa.JSON),
    # Added by migration 0006: the id a /api/chat client gave the chat (None for the page's, which the app names).
    sa.Column("chat_id", sa.String(255)),
    sa.Column("replica", sa.String(255)),  # added by migration 0007: the app process that saved it last
    sa.Index("ix_chat_conversations_owner_updated", "owner", "updated"),
)
replicas = sa.Table(  # added by migration 0007: each app process on this database, and when it was last heard from
    "chat_replicas",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("seen", sa.DateTime(timezone=True), nullable=False),
)
signins = sa.Table(  # added by migration 0007: the review page's sign-ins, by a hash of their token (shared)
    "chat_signins",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
)
sends = sa.Table(  # added by migration 0007: messages in the last minute by rate-limited key (shared limits)
    "chat_sends",
    metadata,
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_chat_sends_key_at", "key", "at"),
)
votes = sa.Table(
    "chat_votes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("session", sa.String(64), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("a", sa.JSON, nullable=False),  # config and reply of each side
    sa.Column("b", sa.JSON, nullable=False),
    sa.Column("vote", sa.String(8), nullable=False),  # a, b, tie
)


def database_url(target: str) -> sa.URL:
    """--log-db's value as a SQLAlchemy URL: a postgresql:// URL, or a file path for SQLite; ValueError says why not."""
    if "://" in target:
        scheme = target.split("://", 1)[0]
        if scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(f"takes a file path (SQLite) or a postgresql:// URL, not a {scheme}:// URL")
        try:
            url = sa.make_url("postgresql+psycopg://" + target.split("://", 1)[1])
        except sa.exc.ArgumentError as exc:
            raise ValueError(f"is not a valid PostgreSQL URL: {exc}") from None
        if not url.database:
            raise ValueError("needs a database name at the end of the URL, e.g. postgresql://user@host/chats")
        return url
    path = Path(target).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / 'chats.db'}")
    if not path.parent.is_dir():
        raise ValueError(f"the folder {path.parent} does not exist")
    return sa.URL.create("sqlite", database=str(path.resolve()))


def where(url: sa.URL) -> str:
    """The database, for messages: never its password."""
    return url.render_as_string(hide_password=True).replace("postgresql+psycopg://", "postgresql://")


def connect(url: sa.URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    engine = sa.create_engine(url, connect_args={"timeout": 5})

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_connection, _record) -> None:  # WAL: readers never wait for the writer; a kill loses nothing
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class Unreadable(Exception):
    """The conversations cannot be read now: their database is unreachable (PostgreSQL down, say)."""


@contextlib.contextmanager
def _reading(url: sa.URL) -> Iterator[None]:
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        log.error("Could not read the conversations from %s: %s", where(url), _first_line(exc))
        raise Unreadable(_first_line(exc)) from None


class NewerSchema(Exception):
    """The database was migrated by a newer version of the app than this one."""


def alembic_config() -> Config:
    """Alembic's configuration for the log's migrations (storage/migrations), without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def newest_schema() -> str:
    """The revision the newest migration leaves a database at."""
    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())


def migrate(engine: Engine) -> str | None:
    """Create the tables, or bring an older database up to the newest migration (Alembic's, in
    storage/migrations); returns the revision found (None: a new database). A log from before Alembic,
    which kept its version in chat_meta, is first marked with the revision it matches."""
    config = alembic_config()
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # replicas starting at once: one migrates, the others then see it done
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        config.attributes["connection"] = connection
        found = MigrationContext.configure(connection).get_current_revision()
        if found is None and sa.inspect(connection).has_table("chat_meta"):
            version = connection.execute(sa.text("SELECT value FROM chat_meta WHERE key = 'schema_version'"))
            found = {"1": "0001", "2": "0002"}[version.scalar_one()]
            command.stamp(config, found)
        if found is not None and found not in known:
            raise NewerSchema(f"the log was written by a newer version of the app (schema {found}); update the app")
        command.upgrade(config, "head")
        return found


@dataclass
class TurnRecord:
    """A finished turn, as the log keeps it."""

    id: str
    conversation: str
    session: str
    ordinal: int
    started: datetime
    ended: datetime
    status: str
    model: str
    message: str
    attachments: list[str]
    reply: str
    thinking: str
    tool_steps: list[dict]
    config: dict
    telemetry: dict
    notice: str = ""


@dataclass
class ConversationRecord:
    """A conversation as the store keeps it for its owner."""

    id: str
    owner: str
    title: str
    created: datetime
    updated: datetime
    status: str  # done, streaming, stopped, interrupted
    messages: list[dict]
    state: dict | None = None  # what its next turn needs beyond the messages (chat.service says what)
    chat_id: str | None = None  # the id a /api/chat client gave it; None for the page's


class LogStore:
    """The log. Writes go through a queue to one thread, so the chat never waits for the database;
    a failed write is one line in the app's log and the chat goes on."""

    def __init__(self, url: sa.URL, retention_days: int = 0, replica: str = "local") -> None:
        self.url = url
        self.replica = replica  # this process's name among those on the database (--replica)
        self.engine = connect(url)
        self.retention_days = retention_days
        self._queue: queue.Queue[Job | threading.Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write_forever, name="chat-log", daemon=True)
        self.problem: str | None = "not opened"  # why the log cannot be written now; None when it can
        self.found_schema: str | None = None  # the revision the database was at when opened
        self._reaped = False  # whether the replies the last run left streaming are marked interrupted
        self._lock = threading.Lock()
        self._newest: dict[str, dict] = {}  # by conversation: its newest save not yet written
        self._queued: set[str] = set()  # conversations with a job queued that has not yet read their newest save
        # The writer's: called as its job's transaction commits (True) or the job is dropped (False), not when it
        # will be retried; may return a job to write next, before anything queued since.
        self._settled: list[Callable[[bool], Job | None]] = []
        self._deleting: set[tuple[str, str]] = set()  # (owner, conversation) whose deletion is not yet written

    def open(self) -> LogStore:
        """Start writing; create or migrate the schema. If the database cannot be used now, self.problem
        says why, and each write tries again (one line in the app's log per failed write)."""
        self._ready()  # before the writer starts: one migration at a time
        self._thread.start()
        self.forget_old()
        return self

    def _ready(self) -> bool:
        if self.problem is None:
            return True
        try:
            self.found_schema = migrate(self.engine)
            if not self._reaped:  # once, as the app starts: after an outage, replies streaming here go on
                with self.engine.begin() as connection:
                    # A reply this replica was streaming when it last stopped will not finish: say so. Other
                    # replicas' are theirs, until they fall silent (_beat).
                    mine = (conversations.c.status == "streaming") & (conversations.c.replica == self.replica)
                    connection.execute(conversations.update().where(mine).values(status="interrupted"))
                self._reaped = True
        except NewerSchema as exc:
            self.problem = str(exc)
            return False
        except Exception as exc:
            self.problem = _first_line(exc)
            return False
        self.problem = None
        return True

    def close(self) -> None:
        """Write what is queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        self.engine.dispose()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (for tests and shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def _write_forever(self) -> None:
        """Write each job in order. While the database cannot be written (PostgreSQL down, a locked file),
        jobs wait in memory (the newest MAX_PENDING) and are written, in order, once it can be again."""
        pending: deque[Job] = deque(maxlen=MAX_PENDING)
        beat = retry = 0.0  # when the next heartbeat, and the next try of waiting writes, are due
        while True:
            if time.monotonic() >= beat:
                beat = time.monotonic() + HEARTBEAT
                if not pending:  # while writes wait, the database is down: the beat would fail too
                    self._beat()
            if pending and time.monotonic() >= retry:
                retry = time.monotonic() + RETRY_SECONDS
                self._write(pending, new=False)
                continue
            due = min(beat, retry) if pending else beat
            try:
                job = self._queue.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:  # time to beat, or to try the waiting writes again
                continue
            if job is None:
                self._write(pending, new=False)  # a last try as the app stops
                return
            if isinstance(job, threading.Event):  # flush(): everything before it is written, or waiting
                job.set()
                continue
            pending.append(job)
            self._write(pending, new=True)
            retry = time.monotonic() + RETRY_SECONDS

    def _beat(self) -> None:
        """Say that this process is alive, and mark the replies that silent ones were streaming interrupted
        (a replica that stopped, or a process from before replicas had names)."""
        at = now()
        try:
            if not self._ready():
                return
            with self.engine.begin() as connection:
                me = replicas.c.name == self.replica
                if not connection.execute(replicas.update().where(me).values(seen=at)).rowcount:
                    connection.execute(replicas.insert().values(name=self.replica, seen=at))
                alive = sa.select(replicas.c.name).where(replicas.c.seen >= at - timedelta(seconds=SILENT))
                silent = conversations.c.replica.is_(None) | conversations.c.replica.not_in(alive)
                streaming = conversations.c.status == "streaming"
                connection.execute(conversations.update().where(streaming & silent).values(status="interrupted"))
                past = at - timedelta(seconds=RateLimiter.WINDOW)  # rate-limited keys that have not come back
                connection.execute(sends.delete().where(sends.c.at < past))
                connection.execute(signins.delete().where(signins.c.expires < at))
        except sa.exc.SQLAlchemyError:  # the database is down or busy: the next write says so, the next beat retries
            return

    def _write(self, pending: deque[Job], *, new: bool) -> None:
        while pending:
            try:
                if not self._ready():
                    raise RuntimeError(self.problem)
                self._settled.clear()
                with self.engine.begin() as connection:
                    pending[0](connection)
                pending.popleft()
                self._settle(pending, committed=True)
            except (RuntimeError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:  # down: wait, retry
                if new:  # one line per failed turn (not per retry); the chat goes on
                    waiting = f"{len(pending)} write{'s' if len(pending) != 1 else ''} wait to be retried"
                    log.error("Could not write to the conversation log %s (%s): %s", where(self.url), waiting,
                              _first_line(exc))  # fmt: skip
                self.problem = self.problem or _first_line(exc)
                return
            except Exception as exc:  # this write itself is wrong (not the database): drop it, go on
                pending.popleft()
                self._settle(pending, committed=False)
                log.error("Could not write to the conversation log %s: %s", where(self.url), _first_line(exc))

    def _settle(self, pending: deque[Job], *, committed: bool) -> None:
        for settled in self._settled:
            if (follow_up := settled(committed)) is not None:
                pending.appendleft(follow_up)

    # -- writes (from any thread; they return at once) ----------------------------
    def add_turn(self, record: TurnRecord) -> None:
        row = dict(record.__dict__)
        self._queue.put(lambda connection: connection.execute(turns.insert().values(**row)))

    def set_feedback(self, turn_id: str, feedback: int | None) -> None:
        self._queue.put(lambda c: c.execute(turns.update().where(turns.c.id == turn_id).values(feedback=feedback)))

    def set_comment(self, turn_id: str, comment: str) -> None:
        self._queue.put(lambda c: c.execute(turns.update().where(turns.c.id == turn_id).values(comment=comment)))

    def add_vote(self, session: str, message: str, a: dict, b: dict, vote: str) -> None:
        row = dict(id=str(uuid.uuid4()), session=session, created=now(), message=message, a=a, b=b, vote=vote)
        self._queue.put(lambda connection: connection.execute(votes.insert().values(**row)))

    def save_conversation(self, record: ConversationRecord, write: bool = True) -> None:
        """Create or replace a conversation. Saves of one conversation that wait for the database are
        merged: only its newest is written. write=False: held for this process's reads (owned(), opened())
        and written with the conversation's next save."""
        row = json.loads(json.dumps(record.__dict__, default=str))  # a copy, as it is now, in JSON's types
        row["created"], row["updated"] = record.created, record.updated
        with self._lock:
            queued = record.id in self._queued
            self._newest[record.id] = row
            if write:
                self._queued.add(record.id)
            self._deleting.discard((record.owner, record.id))
        # One job per conversation writes its newest save; a save made while that job writes is written next,
        # by the writer, before anything queued after it (a flush, the stop).
        if write and not queued:
            self._queue.put(lambda connection: self._write_newest(connection, record.id))

    def _write_newest(self, connection: Connection, conversation: str) -> None:
        with self._lock:
            row = self._newest.get(conversation)
            if row is None:  # deleted while it waited
                self._queued.discard(conversation)
                return
        mine = (conversations.c.id == row["id"]) & (conversations.c.owner == row["owner"])
        changed = {k: row[k] for k in ("title", "updated", "status", "messages", "state", "chat_id")}
        changed["replica"] = self.replica
        if not connection.execute(conversations.update().where(mine).values(**changed)).rowcount:
            connection.execute(conversations.insert().values(**row, replica=self.replica))

        def settled(committed: bool) -> Job | None:  # until the commit, reads see it waiting
            with self._lock:
                if committed and self._newest.get(conversation) is not row:  # a newer save came meanwhile
                    return lambda connection: self._write_newest(connection, conversation)
                if committed:
                    del self._newest[conversation]
                self._queued.discard(conversation)
            return None

        self._settled.append(settled)

    def delete_conversation(self, owner: str, conversation: str) -> None:
        """Delete one of the owner's conversations (another's id deletes nothing)."""
        mine = (conversations.c.id == conversation) & (conversations.c.owner == owner)
        with self._lock:
            if (self._newest.get(conversation) or {}).get("owner") == owner:
                del self._newest[conversation]
            self._deleting.add((owner, conversation))

        def delete(connection: Connection) -> None:
            connection.execute(conversations.delete().where(mine))

            def settled(committed: bool) -> None:
                with self._lock:
                    self._deleting.discard((owner, conversation))

            self._settled.append(settled)

        self._queue.put(delete)

    def forget_old(self) -> None:
        """Delete conversations (logged, and kept for their owners) last changed more than --log-retention-days
        ago (0: keep everything)."""
        if not self.retention_days:
            return
        cutoff = now() - timedelta(days=self.retention_days)

        def delete(connection: Connection) -> None:
            recent = sa.select(turns.c.conversation).where(turns.c.ended >= cutoff)
            connection.execute(turns.delete().where(turns.c.conversation.not_in(recent)))
            connection.execute(votes.delete().where(votes.c.created < cutoff))
            connection.execute(conversations.delete().where(conversations.c.updated < cutoff))

        self._queue.put(delete)

    # -- review sign-ins and rate limits, shared by the replicas on one database -----------
    def keep_signin(self, token_hash: str, expires: datetime) -> None:
        self._queue.put(
            lambda connection: connection.execute(signins.insert().values(token=token_hash, expires=expires))
        )

    def forget_signin(self, token_hash: str) -> None:
        self._queue.put(lambda connection: connection.execute(signins.delete().where(signins.c.token == token_hash)))

    def signin_expires(self, token_hash: str) -> datetime | None:
        """When a kept sign-in expires; None if there is none. Blocking; Unreadable when the database is down."""
        self.flush(timeout=5)  # a sign-in or sign-out just made in this process is written first
        with _reading(self.url), self.engine.connect() as connection:
            return connection.execute(sa.select(signins.c.expires).where(signins.c.token == token_hash)).scalar()

    @property
    def shared(self) -> bool:
        """Whether replicas share this database (PostgreSQL): then rate limits and review sign-ins live here too;
        else each process keeps its own."""
        return self.url.get_backend_name() == "postgresql"

    def admit(self, checks: Sequence[tuple[str, int]]) -> float:
        """For each (key, messages a minute; 0 is no limit): seconds to wait if any key has had that many in the
        last minute; otherwise 0, and the message counts against every key. Blocking (call it from a worker
        thread); Unreadable when the database cannot be reached."""
        checks = sorted((key, limit) for key, limit in checks if limit)  # locked in one order: no deadlock
        at = now()
        since = at - timedelta(seconds=RateLimiter.WINDOW)
        wait = 0.0
        with _reading(self.url), self.engine.begin() as connection:
            for key, limit in checks:  # two replicas admitting the same key's message take turns
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))
                connection.execute(sends.delete().where((sends.c.key == key) & (sends.c.at < since)))
                times = connection.execute(sa.select(sends.c.at).where(sends.c.key == key).order_by(sends.c.at))
                recent = list(times.scalars())
                if len(recent) >= limit:
                    wait = max(wait, RateLimiter.WINDOW - (at - recent[0]).total_seconds())
            if not wait and checks:
                connection.execute(sends.insert(), [{"key": key, "at": at} for key, _ in checks])
        return wait

    # -- reads (blocking: call them from a worker thread) ------------------------
    def models(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(turns.c.model).distinct().order_by(turns.c.model)).scalars())

    def find(
        self,
        *,
        disliked_only: bool = False,
        model: str | None = None,
        text: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 500,
    ) -> list[dict]:
        """Turns, newest first, that match every filter given."""
        query = sa.select(turns).order_by(turns.c.started.desc())
        if disliked_only:
            query = query.where(turns.c.feedback == -1)
        if model:
            query = query.where(turns.c.model == model)
        if text:
            pattern = f"%{text.lower()}%"
            query = query.where(
                sa.or_(sa.func.lower(turns.c.message).like(pattern), sa.func.lower(turns.c.reply).like(pattern))
            )
        if since:
            query = query.where(turns.c.started >= since)
        if until:
            query = query.where(turns.c.started < until)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def conversation(self, conversation: str, up_to: int | None = None) -> list[dict]:
        query = sa.select(turns).where(turns.c.conversation == conversation).order_by(turns.c.ordinal, turns.c.started)
        if up_to is not None:
            query = query.where(turns.c.ordinal <= up_to)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # Reads of conversations see the saves and deletions still waiting for the writer: a conversation
    # listed or opened right after its reply ended is as it ended.
    def owned(self, owner: str, limit: int = 1000) -> list[dict]:
        """The owner's conversations, newest first: id, title, updated, status, chat_id (not their messages).
        Unreadable when the database cannot be reached (one line in the app's log)."""
        c = conversations.c
        fields = ("id", "title", "updated", "status", "chat_id")
        query = sa.select(*(c[name] for name in fields)).where(c.owner == owner).order_by(c.updated.desc())
        # What waits is taken before the query: anything written meanwhile is then in one or the other.
        with self._lock:  # waiting saves are the newest: made seconds ago at most
            waiting = [{k: row[k] for k in fields} for row in reversed(self._newest.values()) if row["owner"] == owner]
            hidden = {row["id"] for row in waiting} | {gone for whose, gone in self._deleting if whose == owner}
        with _reading(self.url), self.engine.connect() as connection:
            stored = [dict(row._mapping) for row in connection.execute(query.limit(limit + len(hidden)))]
        return [*waiting, *(row for row in stored if row["id"] not in hidden)][:limit]

    def opened(self, owner: str, conversation: str) -> dict | None:
        """One of the owner's conversations, whole; None if there is none by that id that is theirs.
        Unreadable when the database cannot be reached (one line in the app's log)."""
        with self._lock:  # before the query, as in owned()
            if (owner, conversation) in self._deleting:
                return None
            waiting = copy.deepcopy(self._newest.get(conversation))
        if waiting is not None:
            return waiting if waiting["owner"] == owner else None
        mine = (conversations.c.id == conversation) & (conversations.c.owner == owner)
        with _reading(self.url), self.engine.connect() as connection:
            row = connection.execute(sa.select(conversations).where(mine)).first()
        return dict(row._mapping) if row else None

    def all_votes(self) -> list[dict]:
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(sa.select(votes).order_by(votes.c.created))]


def now() -> datetime:
    return datetime.now(UTC)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def training_example(store: LogStore, turn: dict) -> dict:
    """A turn in OpenAI's chat format with its conversation before it: {"messages": [...], "metadata": {...}}."""
    system = (turn["config"] or {}).get("system_prompt") or ""
    messages: list[dict] = [{"role": "system", "content": system}] if system.strip() else []
    for earlier in store.conversation(turn["conversation"], up_to=turn["ordinal"]):
        messages.append({"role": "user", "content": earlier["message"]})
        for step in earlier["tool_steps"] or []:
            call = {
                "id": step["id"],
                "type": "function",
                "function": {"name": step["name"], "arguments": step["arguments"]},
            }
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": step["id"], "content": step["result"]})
        messages.append({"role": "assistant", "content": earlier["reply"]})
        if earlier["id"] == turn["id"]:
            break
    metadata = {
        "turn": turn["id"],
        "conversation": turn["conversation"],
        "started": turn["started"].isoformat() if isinstance(turn["started"], datetime) else str(turn["started"]),
        "status": turn["status"],
        "model": turn["model"],
        "settings": turn["config"],
        "telemetry": turn["telemetry"],
        "feedback": {1: "up", -1: "down"}.get(turn["feedback"]),
        "comment": turn["comment"],
    }
    return {"messages": messages, "metadata": metadata}


def turn_lines(store: LogStore, rows: list[dict]) -> Iterator[str]:
    """The turns as JSONL training/eval examples, oldest first."""
    for row in reversed(rows):
        yield json.dumps(training_example(store, row), ensure_ascii=False, default=str) + "\n"


def vote_lines(store: LogStore) -> Iterator[str]:
    """The compare votes as JSONL preference pairs, oldest first: {"message", "a", "b", "vote", "created"}."""
    for vote in store.all_votes():
        row = {"message": vote["message"], "a": vote["a"], "b": vote["b"], "vote": vote["vote"]}
        row["created"] = vote["created"].isoformat() if isinstance(vote["created"], datetime) else vote["created"]
        yield json.dumps(row, ensure_ascii=False, default=str) + "\n"


def export_jsonl(store: LogStore, rows: list[dict], path: Path) -> int:
    """Write the turns to `path` as JSONL; returns how many."""
    with path.open("w", encoding="utf-8") as file:
        file.writelines(turn_lines(store, rows))
    return len(rows)


def votes_path(path: Path) -> Path:
    """Where an export's compare votes go: beside it, chats.jsonl -> chats.votes.jsonl."""
    return path.with_name(f"{path.stem}.votes{path.suffix or '.jsonl'}")


def export_votes(store: LogStore, path: Path) -> int:
    """Write the compare votes to `path` as JSONL; returns how many (no file when there are none)."""
    lines = list(vote_lines(store))
    if lines:
        with path.open("w", encoding="utf-8") as file:
            file.writelines(lines)
    return len(lines)
