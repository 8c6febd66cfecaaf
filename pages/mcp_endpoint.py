"""This chat as an MCP server (--mcp-server): other agents call its `chat` tool at /mcp (and /mcp/)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import mcp_types as types
from mcp.server.lowlevel import Server
from starlette.routing import Mount, Route

from pages.basic_auth import NEEDS_LOGIN, basic_user

PATH = "/mcp"

Answer = Callable[[str, str], Awaitable[str]]  # (message, system prompt) -> the reply's text

# What other agents read: prose, each argument described in the schema. (A docstring with "Args:" is
# what a decorator would send; the low-level server says exactly this and advertises tools only.)
CHAT_TOOL = types.Tool(
    name="chat",
    description=(
        "Send one message to this app's model and get its whole reply; the model may use the app's tools. "
        "Each call is a new conversation."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "What to ask."},
            "system_prompt": {
                "type": "string",
                "description": "Instructions for the model; leave it out for the app's own.",
                "default": "",
            },
        },
        "required": ["message"],
    },
)


def _failed(sentence: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=sentence)], is_error=True)


def chat_server(answer: Answer, version: str) -> Server:
    """An MCP server with one tool, `chat`, that answers through this app's model and tools."""

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[CHAT_TOOL])

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != CHAT_TOOL.name:
            return _failed(f"There is no tool named {params.name!r}: this server has one, chat.")
        arguments = params.arguments or {}
        message, system_prompt = arguments.get("message"), arguments.get("system_prompt", "")
        if not isinstance(message, str):
            return _failed("chat needs a message: the text to send, as a string.")
        if not isinstance(system_prompt, str):
            return _failed("chat's system_prompt must be a string (or left out).")
        try:
            text = await answer(message, system_prompt)
        except ValueError as exc:  # a message the chat would refuse, or a failed reply: one readable line
            return _failed(str(exc))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    return Server(
        "Streaming Chat",
        version=version,
        instructions="Ask the model behind this chat app a question.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def lifespan(server: Server, host: str | None, logins: Sequence[tuple[str, str]]):
    """A lifespan for Gradio's app (launch's app_kwargs) that serves the MCP server at /mcp and /mcp/."""
    # The SDK turns on DNS-rebinding protection (Host must be loopback) when told it serves loopback.
    app = server.streamable_http_app(streamable_http_path="/", host=host or "127.0.0.1")
    guarded = _basic_auth(app, logins) if logins else app

    @contextlib.asynccontextmanager
    async def run(gradio_app) -> AsyncIterator[None]:
        # First, before Gradio's routes: the MCP endpoint answers POST, GET and DELETE of its own, at /mcp
        # itself too (Mount alone redirects it to /mcp/, and MCP clients refuse redirects).
        exact = Route(PATH, _AtRoot(guarded), methods=["GET", "POST", "DELETE"])
        gradio_app.router.routes[0:0] = [exact, Mount(PATH, app=guarded)]
        async with server.session_manager.run():
            yield

    return run


class _AtRoot:
    """An ASGI app called as if at its mount's root: Route(PATH, ...) hands it the path PATH itself.
    (A class, not a function: Starlette takes a function for a request handler.)"""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        await self.app({**scope, "path": "/", "root_path": scope.get("root_path", "") + PATH}, receive, send)


def _basic_auth(app, logins: Sequence[tuple[str, str]]):
    """The app behind HTTP Basic auth with --auth's logins: Gradio's login does not cover this route."""

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            if basic_user(given, logins) is None:
                headers = [(b"www-authenticate", b'Basic realm="chat"'), (b"content-type", b"text/plain")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": NEEDS_LOGIN.encode()})
                return
        await app(scope, receive, send)

    return guarded
