"""This chat as an MCP server (--mcp-server): other agents call its `chat` tool at /mcp/."""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.routing import Mount

PATH = "/mcp"

Answer = Callable[[str, str], Awaitable[str]]  # (message, system prompt) -> the reply's text


def chat_server(answer: Answer) -> MCPServer:
    """An MCP server with one tool, `chat`, that answers through this app's model and tools."""
    server = MCPServer("Streaming Chat", instructions="Ask the model behind this chat app a question.")

    @server.tool(name="chat")
    async def chat(message: str, system_prompt: str = "") -> str:
        """Send one message to this app's model and get its whole reply (it may use the app's tools).

        Each call is a new conversation.

        Args:
            message: What to ask.
            system_prompt: Instructions for the model; empty for the app's own.
        """
        try:
            return await answer(message, system_prompt)
        except ValueError as exc:  # a message the chat would refuse, or a failed reply: one readable line
            raise ToolError(str(exc)) from None

    return server


def lifespan(server: MCPServer, host: str | None, logins: Sequence[tuple[str, str]]):
    """A lifespan for Gradio's app (launch's app_kwargs) that mounts the server at /mcp/ and runs it."""
    # The SDK turns on DNS-rebinding protection (Host must be loopback) when told it serves loopback.
    app = server.streamable_http_app(streamable_http_path="/", host=host or "127.0.0.1")
    guarded = _basic_auth(app, logins) if logins else app

    @contextlib.asynccontextmanager
    async def run(gradio_app) -> AsyncIterator[None]:
        # First, before Gradio's routes: the MCP endpoint answers POST, GET and DELETE of its own.
        gradio_app.router.routes.insert(0, Mount(PATH, app=guarded))
        async with server.session_manager.run():
            yield

    return run


def _basic_auth(app, logins: Sequence[tuple[str, str]]):
    """The app behind HTTP Basic auth with --auth's logins: Gradio's login does not cover this route."""
    accepted = [f"Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}" for user, password in logins]

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            if not any(secrets.compare_digest(given, expected) for expected in accepted):
                headers = [(b"www-authenticate", b'Basic realm="chat"'), (b"content-type", b"text/plain")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": b"This chat needs a login (--auth)."})
                return
        await app(scope, receive, send)

    return guarded
