"""The connections to the MCP servers, kept open for the app's lifetime in a thread of their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import IO

import httpx2
import jsonschema
import mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from core.redaction import Redactor
from core.turn import ToolResult
from tools.servers import ServerSpec
from tools.stdio import stdio_transport

log = logging.getLogger("chat.tools")
NAME_PATTERN = re.compile(r"[^a-zA-Z0-9_-]")  # OpenAI's rule for a function name: ^[a-zA-Z0-9_-]{1,64}$
START_SECONDS = 30.0  # a server that has not listed its tools by then is reported as failed
MIN_SECRET_CHARS = 8  # env and header values this long are redacted from results (short ones: TZ=UTC)


@dataclass(frozen=True)
class Tool:
    """A tool as the model sees it; `name` is unique across servers."""

    name: str
    server: str
    remote_name: str  # its name on its server
    description: str
    schema: dict
    approve: bool  # runs only when the user presses Run

    def openai(self) -> dict:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.schema},
        }


@dataclass
class ServerStatus:
    name: str
    where: str
    tools: list[str] = field(default_factory=list)
    error: str | None = None  # why it is not available

    def line(self) -> str:
        if self.error:
            return f"✗ MCP server {self.name} ({self.where}) is not available: {self.error}"
        return f"✓ MCP server {self.name}: {', '.join(self.tools) or 'no tools'}"


class _Connection:
    """One server. Its Client is entered and left in one task, as the SDK's task groups require."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.client: Client | None = None
        self.error: str | None = None
        self.listed: list[mcp_types.Tool] = []
        self.restarts = 0
        self.refused: int | None = None  # the last HTTP error status: the SDK's error does not carry it
        self.stderr: IO[str] | None = None  # a stdio server's stderr
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _transport(self) -> contextlib.AbstractAsyncContextManager | object:
        if self.spec.in_process is not None:  # the SDK connects its client to the server in memory
            return self.spec.in_process
        if self.spec.url:
            return _http_transport(self.spec.url, dict(self.spec.headers), self._saw)
        # "python" is the interpreter running this app, whose packages the example servers are in
        # (the PATH's python may be another, without them).
        command = sys.executable if self.spec.command in ("python", "python3") else self.spec.command or ""
        params = StdioServerParameters(
            command=command, args=list(self.spec.args), env=dict(self.spec.env), cwd=self.spec.cwd
        )
        # The server's stderr goes to a file, not the app's console: a failed start is told with its last line.
        if self.stderr is not None:
            self.stderr.close()  # the previous run's
        self.stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - as long as it runs
        return stdio_transport(params, self.stderr, name=self.spec.name)

    def last_words(self) -> str:
        """The last line the server wrote to stderr (a traceback's last line says what went wrong), or ""."""
        if self.stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self.stderr.seek(0)
            lines = [line.strip() for line in self.stderr.read()[-20_000:].splitlines() if line.strip()]
            return lines[-1][:300] if lines else ""
        return ""

    async def _saw(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.refused = response.status_code

    async def open(self) -> None:
        """Connect and list the tools; on failure self.error says why."""
        self._stop = asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(ready), name=f"mcp {self.spec.name}")
        try:
            async with asyncio.timeout(START_SECONDS):
                await asyncio.shield(ready)
            self.error = None
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError)
            self.error = f"it did not start within {START_SECONDS:.0f} s" if timed_out else _reason(exc)
            if self.refused and not timed_out:
                self.error = f"it answered HTTP {self.refused}" + (
                    " (check its headers)" if self.refused in (401, 403) else ""
                )
            await self.close()
            if said := self.last_words():
                self.error += f"; it said: {said}"

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with Client(self._transport()) as client:
                self.listed = await _all_tools(client)
                self.client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            if not isinstance(exc, Exception):
                raise
        finally:
            self.client = None

    async def close(self) -> None:
        """Leave the Client: a stdio server's process tree ends; an HTTP session is deleted."""
        self._stop.set()
        task = self._task
        if task and not task.done():
            if self.client is None:  # still starting (the app is stopping meanwhile): nothing to finish
                task.cancel()
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
            except (Exception, asyncio.CancelledError):  # it failed, or was cancelled, as it closed
                pass
            # A cancelled Client still ends the server's process tree (SIGTERM, then SIGKILL): wait for that.
            with contextlib.suppress(Exception, asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(8):
                    await task
        self.client = None


@contextlib.asynccontextmanager
async def _http_transport(url: str, headers: dict[str, str], on_response) -> AsyncIterator:
    # The SDK's own timeouts for MCP: a server may hold a response stream open for minutes.
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks={"response": [on_response]}) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


async def _all_tools(client: Client) -> list[mcp_types.Tool]:
    tools, cursor = [], None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def _reason(exc: BaseException) -> str:
    """One line for a failure, from inside the task groups the SDK raises through."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or 'the command'} was not found"
    if isinstance(exc, httpx2.ConnectError):
        return "nothing answered at its URL"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _unique_names(servers: Sequence[_Connection]) -> list[Tool]:
    tools: list[Tool] = []
    taken: set[str] = set()
    for connection in servers:
        for listed in connection.listed:
            name = NAME_PATTERN.sub("_", listed.name)[:64] or "tool"
            if name in taken:  # a second server with a tool of that name: prefix its server's name
                name = NAME_PATTERN.sub("_", f"{connection.spec.name}__{listed.name}")[:64]
            base, n = name, 2
            while name in taken:
                name, n = f"{base[:60]}_{n}", n + 1
            taken.add(name)
            schema = listed.input_schema or {"type": "object", "properties": {}}
            tools.append(
                Tool(name, connection.spec.name, listed.name, listed.description or "", schema, connection.spec.approve)
            )
    return tools


class ToolHub:
    """The MCP servers' tools for the chat: listed at startup, called from any event loop.

    The connections live in one background thread and event loop, started before the app
    serves and closed when it stops. A call is cancelled (an MCP cancellation) when the
    task awaiting it is: Stop in the chat.
    """

    def __init__(
        self,
        specs: Sequence[ServerSpec],
        *,
        timeout: float = 30.0,
        max_result_chars: int = 20_000,
        secrets: Sequence[str | None] = (),
        approve_all: bool = False,
    ) -> None:
        self.connections = [_Connection(spec) for spec in specs]
        self.timeout = timeout
        self.max_result_chars = max_result_chars
        # The app's secrets as given; the servers' env and header values only when long enough to be one.
        own = [value for spec in specs for value in spec.secrets if len(value) >= MIN_SECRET_CHARS]
        self._redactor = Redactor([*secrets, *own])
        self.approve_all = approve_all
        self.tools: list[Tool] = []
        self._openai: tuple[dict, ...] = ()  # the tools in OpenAI's format, built once at start
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifetime ---------------------------------------------------------------
    def start(self) -> list[ServerStatus]:
        """Start every server (at once) and list their tools; a failed one is reported, not fatal."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp", daemon=True)
        self._thread.start()
        self._run(self._open_all(), START_SECONDS + 15)
        self.tools = _unique_names([c for c in self.connections if c.client])
        if self.approve_all:
            self.tools = [Tool(**{**t.__dict__, "approve": True}) for t in self.tools]
        self._openai = tuple(tool.openai() for tool in self.tools)
        return self.status()

    def status(self) -> list[ServerStatus]:
        return [
            ServerStatus(
                c.spec.name,
                self.redact(c.spec.url or c.spec.command or c.spec.where),
                [t.name for t in self.tools if t.server == c.spec.name],
                None if c.client else self.redact(c.error or "it stopped"),  # its stderr may hold a secret
            )
            for c in self.connections
        ]

    def close(self) -> None:
        """Stop every server; safe to call twice."""
        if self._loop is None or self._thread is None:
            return
        loop, self._loop = self._loop, None
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout=20)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5)

    async def _open_all(self) -> None:
        await asyncio.gather(*(c.open() for c in self.connections))

    async def _close_all(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections))

    def _run(self, coroutine, timeout: float):
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=timeout)

    # -- use --------------------------------------------------------------------
    def openai_tools(self) -> tuple[dict, ...]:
        return self._openai

    def find(self, name: str) -> Tool | None:
        return next((tool for tool in self.tools if tool.name == name), None)

    def needs_approval(self, name: str) -> bool:
        return bool((tool := self.find(name)) and tool.approve)

    def redact(self, text: str) -> str:
        return self._redactor.text(text)

    async def call(self, name: str, arguments: str) -> ToolResult:
        """Run a tool call as the model wrote it. Every failure is a result the model and the user
        can read; only cancellation (Stop) raises."""
        started = time.monotonic()
        tool = self.find(name)
        if tool is None:
            result = ToolResult(f"There is no tool named {name!r}. The tools are: {self._names()}.", True)
        elif isinstance(parsed := _arguments(arguments, tool.schema), str):
            result = ToolResult(parsed, True)
        elif self._loop is None:
            result = ToolResult("The tools have stopped: the app is shutting down.", True)
        else:
            # Runs in the hub's loop; cancelling this await cancels it there (run_coroutine_threadsafe).
            future = asyncio.run_coroutine_threadsafe(self._call(tool, parsed), self._loop)
            result = await asyncio.wrap_future(future)
        result.text = self._limit(self.redact(result.text))
        result.seconds = time.monotonic() - started
        return result

    def _names(self) -> str:
        return ", ".join(tool.name for tool in self.tools) or "none"

    def _limit(self, text: str) -> str:
        if len(text) <= self.max_result_chars:
            return text
        kept = self.max_result_chars
        return f"{text[:kept]}\n[The result was truncated: {len(text):,} characters; the first {kept:,} are here.]"

    async def _call(self, tool: Tool, arguments: dict) -> ToolResult:
        connection = next(c for c in self.connections if c.spec.name == tool.server)
        if connection.client is None:  # it stopped since the last call: start it again, once per failure
            await connection.open()
            connection.restarts += 1
            if connection.client is None:
                why = f"The {tool.server} server stopped, and starting it again failed: {connection.error}"
                return ToolResult(why, True)
        client = connection.client
        try:
            async with asyncio.timeout(self.timeout):
                answer = await client.call_tool(tool.remote_name, arguments)
        except TimeoutError:
            return ToolResult(f"{tool.name} did not finish within {self.timeout:g} s, so it was cancelled.", True)
        except MCPError as exc:
            if exc.code != mcp_types.CONNECTION_CLOSED:
                return ToolResult(f"{tool.name} failed: {exc}", True)
            log.warning("MCP server %s stopped during a call to %s", tool.server, tool.name)
            await connection.close()
            connection.error = "it stopped"
            why = f"The {tool.server} server stopped while running {tool.name}; it is started again for the next call."
            return ToolResult(why, True)
        except Exception as exc:
            return ToolResult(f"{tool.name} failed: {_reason(exc)}", True)
        return ToolResult(self._redactor.joined(_parts_of(answer), "\n"), bool(answer.is_error))


def _arguments(text: str, schema: dict) -> dict | str:
    """The call's arguments as an object, or why they are not acceptable."""
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        return f"The arguments are not valid JSON ({exc.msg} at character {exc.pos}): {text[:200]}"
    if not isinstance(value, dict):
        return f"The arguments must be a JSON object, not {type(value).__name__}: {text[:200]}"
    try:
        error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(value))
    except jsonschema.exceptions.SchemaError:
        return value  # the server's schema is broken: let the server judge the arguments
    if error is not None:
        where = "/".join(map(str, error.absolute_path))
        return f"The arguments do not fit the tool's schema{f' at {where}' if where else ''}: {error.message}"
    return value


def _parts_of(answer: mcp_types.CallToolResult) -> list[str]:
    parts: list[str] = []
    for block in answer.content:
        match block:
            case mcp_types.TextContent():
                parts.append(block.text)
            case mcp_types.ImageContent() | mcp_types.AudioContent():
                parts.append(f"[{block.type}: {block.mime_type}, not shown]")
            case mcp_types.EmbeddedResource():
                resource = block.resource
                parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
            case mcp_types.ResourceLink():
                parts.append(f"[resource {block.uri}]")
    if not parts and answer.structured_content is not None:
        parts.append(json.dumps(answer.structured_content, ensure_ascii=False))
    return parts or ["(no output)"]
