"""An MCP server for the tool tests, written with the official SDK: tools that echo, sleep, raise,
answer with an error, return huge output, write garbage to stdout, leak a secret, and die.

    python -m testkit.mcp_tools_server                      # over stdio
    python -m testkit.mcp_tools_server --http --port 8912   # streamable HTTP at http://127.0.0.1:8912/mcp

Over HTTP with MCP_TEST_TOKEN set, a request without "Authorization: Bearer <token>" gets 401.

Each call is appended to the file named by MCP_TEST_LOG, if set, so tests can see what ran
and what was cancelled; with MCP_TEST_TIMES set, `sleep` appends "START END" (time.monotonic(),
system-wide) to that file, for the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import mcp.server.stdio
from mcp.server.mcpserver import MCPServer
from mcp_types import TextContent

server = MCPServer("test-tools")


def log(line: str) -> None:
    if path := os.environ.get("MCP_TEST_LOG"):
        with open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    log(f"echo {text}")
    return text


@server.tool()
async def sleep(seconds: float) -> str:
    """Wait this many seconds, then say so."""
    started = time.monotonic()
    log(f"sleep {seconds} start")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        log(f"sleep {seconds} cancelled")
        raise
    log(f"sleep {seconds} done")
    if path := os.environ.get("MCP_TEST_TIMES"):
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{started} {time.monotonic()}\n")
    return f"slept {seconds} s"


@server.tool()
def fail(reason: str) -> str:
    """Raise an exception with this reason."""
    raise RuntimeError(reason)


@server.tool()
def huge(characters: int) -> str:
    """Return this many characters."""
    return "x" * characters


@server.tool()
def garble(lines: int) -> str:
    """Write this many lines that are not JSON-RPC to stdout, each with bytes that are not UTF-8, then answer."""
    # The SDK moves fd 1 to stderr while it serves (print() cannot break the protocol): write to its wire,
    # as a server written without the SDK (console.log in Node) writes to stdout.
    wire = mcp.server.stdio._claims[1].private_fd
    for n in range(lines):
        os.write(wire, b"this is not JSON \xff\xfe %d\n" % n)
    return "garbled"


@server.tool()
def split_secret() -> list[TextContent]:
    """Return TEST_SECRET cut in two content blocks (to test redaction across blocks)."""
    value = os.environ.get("TEST_SECRET", "")
    return [TextContent(type="text", text=f"begin {value[:5]}"), TextContent(type="text", text=f"{value[5:]} end")]


@server.tool()
def secret() -> str:
    """Return the value of the environment variable TEST_SECRET (to test redaction)."""
    return f"the secret is {os.environ.get('TEST_SECRET', '')}"


@server.tool()
def die() -> str:
    """End this server's process at once."""
    log("die")
    os._exit(3)


def require_token(app):
    """The app, answering 401 to requests without the token in MCP_TEST_TOKEN (if set)."""
    token = os.environ.get("MCP_TEST_TOKEN")

    async def guarded(scope, receive, send):
        headers = dict(scope.get("headers") or [])
        if token and scope["type"] == "http" and headers.get(b"authorization") != f"Bearer {token}".encode():
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no token"})
            return
        await app(scope, receive, send)

    return guarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--port", type=int, default=8912)
    args = parser.parse_args()
    if args.http:
        import uvicorn

        uvicorn.run(require_token(server.streamable_http_app()), host="127.0.0.1", port=args.port, log_level="warning")
    else:
        server.run()


if __name__ == "__main__":
    main()
