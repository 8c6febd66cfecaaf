"""The stdio transport to an MCP server, reading its stdout in bounded lines: a huge or garbled one costs one line."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TextIO

import anyio
import anyio.lowlevel
import mcp_types
from anyio.abc import ByteReceiveStream
from mcp import StdioServerParameters
from mcp.client._transport import TransportStreams

# The SDK's own process handling (a new session to kill the tree; the MCP spec's shutdown sequence):
# only the reader differs. Its reader joins every chunk of a line to the text before (quadratic on a
# 50 MB line) and logs a traceback for each line that is not JSON-RPC.
from mcp.client.stdio import (
    _create_platform_compatible_process,
    _drain_stdout,
    _stop_server_process,
    get_default_environment,
)
from mcp.shared.message import SessionMessage

log = logging.getLogger("chat.tools")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a tool result is cut to --max-tool-result-chars anyway
COMPLAINT_SECONDS = 10.0  # at most one line per server this often about what it wrote
_WRITER_FLUSH_SECONDS = 0.5
# A response's id, when it comes before its result (as every SDK writes it): the call can then be answered.
_LEADING_ID = re.compile(rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+|"[^"\\]{0,200}")')


class TooLong(bytes):
    """The first bytes of a line that went past the limit; the rest was read and dropped."""


async def bounded_lines(stream: ByteReceiveStream, limit: int) -> AsyncIterator[bytes]:
    """The stream's lines without their newline, each read once (linear); a line longer than
    `limit` comes as a TooLong of its start."""
    line = bytearray()
    dropping: TooLong | None = None
    async for chunk in stream:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if dropping is not None:
                yield dropping
                dropping = None
            else:
                line += chunk[start:end]
                yield bytes(line)
                line.clear()
            start = end + 1
        if dropping is None:
            line += chunk[start:]
            if len(line) > limit:
                dropping = TooLong(line[:300])
                line.clear()
    if line:
        yield bytes(line)


class _Complaints:
    """One log line per server per COMPLAINT_SECONDS about what it wrote, with how many were not told."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.last = -COMPLAINT_SECONDS
        self.untold = 0

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        if now - self.last < COMPLAINT_SECONDS:
            self.untold += 1
            return
        more = f" ({self.untold} more since the last such line)" if self.untold else ""
        log.warning("MCP server %s %s%s", self.server, what, more)
        self.last, self.untold = now, 0


def read_message(line: bytes, complain: _Complaints, limit: int) -> SessionMessage | None:
    """The JSON-RPC message on one line; None (and a complaint) for one that cannot be used."""
    if isinstance(line, TooLong):
        complain(f"sent a message larger than {limit // 1024 // 1024} MiB; it was not read")
        if found := _LEADING_ID.match(line):
            raw = found.group(1).decode()
            error = mcp_types.ErrorData(
                code=mcp_types.INTERNAL_ERROR,
                message=f"its result was larger than {limit // 1024 // 1024} MiB, so it was not read",
            )
            request_id = int(raw) if raw[0] != '"' else raw[1:-1]
            return SessionMessage(mcp_types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
        return None
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8", errors="replace")
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(text, by_name=False))
    except ValueError:
        complain(f"wrote a line to stdout that is not JSON-RPC: {line[:80]!r}")
        return None


@asynccontextmanager
async def stdio_transport(
    params: StdioServerParameters, errlog: TextIO, *, name: str, limit: int = MAX_MESSAGE_BYTES
) -> AsyncIterator[TransportStreams]:
    """Run the server and connect to it, as the SDK's stdio_client does."""
    process = await _create_platform_compatible_process(
        command=params.command,
        args=params.args,
        env=get_default_environment() | (params.env or {}),
        errlog=errlog,
        cwd=params.cwd,
    )
    to_session, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, from_session = anyio.create_memory_object_stream[SessionMessage](0)
    writer_done = anyio.Event()
    complain = _Complaints(name)

    async def read() -> None:
        assert process.stdout is not None
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            async with to_session:
                try:
                    async for line in bounded_lines(process.stdout, limit):
                        if (message := read_message(line, complain, limit)) is not None:
                            await to_session.send(message)
                finally:
                    await _drain_stdout(process)  # a server still writing could not exit

    async def write() -> None:
        assert process.stdin is not None
        try:
            async with from_session:
                async for message in from_session:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await to_session.aclose()  # the session sees the end instead of waiting forever
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        tasks.start_soon(write)
        try:
            yield read_stream, write_stream
        finally:
            # Bounded and shielded: a cancelled caller must not leave the server running.
            with anyio.CancelScope(shield=True):
                read_stream.close()
                write_stream.close()
                with anyio.move_on_after(_WRITER_FLUSH_SECONDS):
                    await writer_done.wait()
                await _stop_server_process(process)
                for stream in (read_stream, write_stream, to_session, from_session):
                    await stream.aclose()
                await anyio.lowlevel.checkpoint()
            tasks.cancel_scope.cancel()
