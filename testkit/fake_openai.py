"""A small OpenAI-compatible chat server on loopback, for tests and benchmarks.

It speaks real HTTP/1.1 with keep-alive and Server-Sent Events, so the `openai`
SDK talks to it exactly as it would to a provider. It records every request,
notices the moment a client closes a stream early, and injects faults.

Run alone (for benchmarks or a manual try):  python -m testkit.fake_openai --port 8911

Scripted by message: a last user message "bench:N:MS" gets N numbered tokens ("w0 w1 ..."),
one every MS milliseconds. "tools:STEPS:N:MS:TOOL_MS" makes a turn of STEPS steps: each but the
last streams N tokens and then calls the MCP test tool `sleep` for TOOL_MS milliseconds; the
last streams N tokens and stops. GET /_stats reports the server's stream counters and timings
(time.monotonic(), which is system-wide, so other processes on this machine can compare),
and the most streams open at once since the previous /_stats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["drop", "error_event", "bad_json", "stall", "truncate"]
SCRIPTED = re.compile(r"bench:(\d+):(\d+(?:\.\d+)?)")
TOOL_SCRIPTED = re.compile(r"tools:(\d+):(\d+):(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)")


@dataclass
class ToolCall:
    """A tool call the model makes: its arguments sent in `pieces` (default: one)."""

    name: str
    arguments: str = "{}"
    id: str | None = None  # None: call_<index>
    pieces: list[str] | None = None  # how the arguments are split across chunks; they must join to `arguments`


@dataclass
class Reply:
    """What the server answers to one chat request.

    `text` None echoes the last user message as "Echo: <message>".
    `status` other than 200 answers with that HTTP error instead of a stream.
    `fault` happens after `fault_after` content chunks.
    """

    text: str | None = None
    tokens: list[str] | None = None  # explicit chunking; overrides `text`
    delay: float = 0.0  # seconds before each content chunk
    finish_reason: str | None = "stop"
    status: int = 200
    error_message: str = "injected error"
    error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None
    fault_after: int = 2
    stall_seconds: float = 30.0
    reasoning: list[str] | None = None  # chunks of thinking sent before the content
    reasoning_field: str = "reasoning_content"  # DeepSeek/vLLM; Ollama and OpenRouter say "reasoning"
    usage: bool = True  # send token usage when the client asks for it
    tool_calls: list[ToolCall] | None = None  # sent after the text; the finish reason becomes "tool_calls"
    split_utf8: bool = False  # send each event in two HTTP chunks, cut inside a multi-byte character


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict
    received: float = field(default_factory=time.monotonic)


def split_tokens(text: str) -> list[str]:
    """Split text into word-sized chunks, keeping every character."""
    tokens: list[str] = []
    word = ""
    for char in text:
        if char == " " and word.strip():
            tokens.append(word)
            word = ""
        word += char
    if word:
        tokens.append(word)
    return tokens


def numbered_tokens(count: int) -> list[str]:
    """`count` distinct one-word tokens: "w0 w1 w2 ..."."""
    return [f"w{i} " for i in range(count)]


class FakeOpenAI:
    """The server. Use as a context manager or call start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.default = Reply()
        self.replies: deque[Reply] = deque()
        self.requests: list[RecordedRequest] = []
        self.streams_started = 0
        self.streams_completed = 0
        self.closed_early: list[float] = []  # monotonic times a client closed a stream early
        self.open_streams = 0
        self.peak_open_streams = 0  # the most streams open at once since the last reset (or /_stats)
        self.sent: list[tuple[float, float]] = []  # (first, last) content chunk sent, per completed stream
        self.timeline: list[tuple[float, float]] = []  # (request received, stream ended), per completed stream
        self.models = ["fake-model", "fake-model-2"]
        self.models_status = 200  # another status makes GET /models fail with it
        self.refuse_stream_options = False  # answer 422 to a request with stream_options, as Mistral does
        self.refuse_tools = False  # answer 400 to a request with tools, as Ollama does for some models
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()

    # -- control from tests ------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        """The next requests get these replies, in order; then `default` again."""
        self.replies.extend(replies)

    def reset(self) -> None:
        """As new: no scripted reply, no record; first, streams still open from before close (a few seconds at
        most), so that a late close of an earlier test's stream cannot land in the next test's records."""
        self.wait_for(lambda: self.open_streams == 0, timeout=5.0)
        self.default = Reply()
        self.models = ["fake-model", "fake-model-2"]
        self.models_status = 200
        self.refuse_stream_options = False
        self.refuse_tools = False
        self.replies.clear()
        self.requests.clear()
        self.closed_early.clear()
        self.sent.clear()
        self.timeline.clear()
        self.streams_started = self.streams_completed = 0
        self.peak_open_streams = self.open_streams

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        """Block until predicate() is true (checked whenever a stream changes state)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> FakeOpenAI:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP --------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        leftover = b""
        try:
            while True:
                request, leftover = await self._read_request(reader, leftover)
                if request is None:
                    return
                leftover = await self._respond(request, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is stopping
        finally:
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, leftover: bytes
    ) -> tuple[RecordedRequest | None, bytes]:
        data = leftover
        while b"\r\n\r\n" not in data:
            chunk = await reader.read(65536)
            if not chunk:
                return None, b""
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = await reader.read(65536)
            if not chunk:
                return None, b""
            rest += chunk
        body_bytes, leftover = rest[:length], rest[length:]
        body = json.loads(body_bytes) if body_bytes else {}
        return RecordedRequest(method, path, headers, body), leftover

    async def _respond(
        self, request: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """Answer one request; returns bytes of the next request read early, if any."""
        self.requests.append(request)
        if request.method == "GET" and request.path == "/_stats":
            await self._send_json(writer, 200, self.stats())
            self.peak_open_streams = self.open_streams  # the next /_stats reports the peak since this one
            return b""
        if request.method == "GET" and request.path.rstrip("/").endswith("/models"):
            if self.models_status != 200:
                error = {"message": "models listing refused", "type": "invalid_request_error", "code": None}
                await self._send_json(writer, self.models_status, {"error": error})
                return b""
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.models]
            await self._send_json(writer, 200, {"object": "list", "data": data})
            return b""
        if not request.path.rstrip("/").endswith("/chat/completions"):
            await self._send_json(writer, 404, {"error": {"message": "no such route"}})
            return b""

        if self.refuse_stream_options and "stream_options" in request.body:
            detail = [
                {"type": "extra_forbidden", "loc": ["body", "stream_options"], "msg": "Extra inputs are not permitted"}
            ]
            await self._send_json(
                writer, 422, {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"}
            )
            return b""
        if self.refuse_tools and request.body.get("tools"):
            error = {"message": "fake-model does not support tools", "type": "invalid_request_error", "code": None}
            await self._send_json(writer, 400, {"error": error})
            return b""
        reply = self.replies.popleft() if self.replies else self._scripted(request) or self.default
        if reply.status != 200:
            error = {"message": reply.error_message, "type": "invalid_request_error", "code": reply.error_code}
            await self._send_json(writer, reply.status, {"error": error}, reply.headers)
            return b""
        tokens = reply.tokens if reply.tokens is not None else split_tokens(self._reply_text(reply, request))
        if not request.body.get("stream"):
            await self._send_json(writer, 200, self._completion(request, "".join(tokens), reply.finish_reason))
            return b""
        return await self._stream(request, reply, tokens, reader, writer)

    def stats(self) -> dict:
        return {
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "open_streams": self.open_streams,
            "peak_open_streams": self.peak_open_streams,
            "closed_early": self.closed_early,
            "sent": self.sent,
            "timeline": self.timeline,
        }

    @staticmethod
    def _last_user_text(request: RecordedRequest) -> str:
        """The last user message's text; content may be a string or a list of parts, as in the API."""
        users = [m for m in request.body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)

    def _scripted(self, request: RecordedRequest) -> Reply | None:
        text = self._last_user_text(request).strip()
        if match := TOOL_SCRIPTED.fullmatch(text):
            steps, tokens, delay, tool_ms = int(match[1]), int(match[2]), float(match[3]) / 1000, float(match[4])
            messages = request.body.get("messages", [])
            last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
            done = sum(m.get("role") == "tool" for m in messages[last_user:])
            call = [ToolCall("sleep", json.dumps({"seconds": tool_ms / 1000}))] if done < steps - 1 else None
            return Reply(tokens=numbered_tokens(tokens), delay=delay, tool_calls=call)
        if match := SCRIPTED.fullmatch(text):
            return Reply(tokens=numbered_tokens(int(match[1])), delay=float(match[2]) / 1000)
        return None

    def _reply_text(self, reply: Reply, request: RecordedRequest) -> str:
        return reply.text if reply.text is not None else f"Echo: {self._last_user_text(request)}"

    async def _stream(
        self,
        request: RecordedRequest,
        reply: Reply,
        tokens: list[str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bytes:
        model = json.dumps(request.body.get("model", "fake-model"))
        prefix = '{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":0,"model":' + model

        def chunk(delta: str, finish: str | None = None) -> bytes:
            choice = f'{{"index":0,"delta":{delta},"finish_reason":{json.dumps(finish)}}}'
            return f'{prefix},"choices":[{choice}]}}'.encode()

        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        # With keep-alive the client sends nothing while it reads a response, so
        # anything read now is either EOF (it closed the stream) or its next request.
        watcher = asyncio.ensure_future(reader.read(65536))
        self.streams_started += 1
        self.open_streams += 1
        self.peak_open_streams = max(self.peak_open_streams, self.open_streams)
        self._notify()
        outcome = "client_closed"  # or "completed" / "fault"
        first_sent = last_sent = 0.0
        try:
            await self._event(writer, chunk('{"role":"assistant","content":""}'))
            for thought in reply.reasoning or []:
                if reply.delay:
                    await asyncio.wait({watcher}, timeout=reply.delay)
                await self._event(writer, chunk(json.dumps({reply.reasoning_field: thought})))
            for index, token in enumerate(tokens):
                if reply.fault and index == reply.fault_after:
                    break
                if reply.delay:
                    await asyncio.wait({watcher}, timeout=reply.delay)
                if watcher.done():
                    return b""
                await self._event(writer, chunk(json.dumps({"content": token})))
                last_sent = time.monotonic()
                first_sent = first_sent or last_sent
            if reply.fault:
                outcome = await self._fault(reply, writer, watcher)
                return b""
            for index, call in enumerate(reply.tool_calls or []):
                start = {"index": index, "id": call.id or f"call_{index}", "type": "function"}
                start["function"] = {"name": call.name, "arguments": ""}
                await self._event(writer, chunk(json.dumps({"tool_calls": [start]})), reply.split_utf8)
                for piece in call.pieces if call.pieces is not None else [call.arguments]:
                    if reply.delay:
                        await asyncio.wait({watcher}, timeout=reply.delay)
                    delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    await self._event(writer, chunk(json.dumps(delta, ensure_ascii=False)), reply.split_utf8)
            if reply.finish_reason:
                finish = "tool_calls" if reply.tool_calls else reply.finish_reason
                await self._event(writer, chunk("{}", finish))
            if reply.usage and (request.body.get("stream_options") or {}).get("include_usage"):
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.body.get("messages", []))
                completion = len(tokens) + len(reply.reasoning or [])  # providers count thinking as completion
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion,
                }
                await self._event(writer, f'{prefix},"choices":[],"usage":{json.dumps(usage)}}}'.encode())
            await self._event(writer, b"[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            outcome = "completed"
        except ConnectionError:
            return b""
        finally:
            self.open_streams -= 1
            if outcome == "completed":
                self.streams_completed += 1
                self.sent.append((first_sent, last_sent))
                self.timeline.append((request.received, time.monotonic()))
            elif outcome == "client_closed":
                self.closed_early.append(time.monotonic())
            if outcome != "completed":
                watcher.cancel()
            self._notify()
        # The response is complete: whatever the watcher read is the next request.
        next_bytes = await watcher
        if not next_bytes:
            raise ConnectionResetError
        return next_bytes

    async def _fault(self, reply: Reply, writer: asyncio.StreamWriter, watcher: asyncio.Future) -> str:
        """Inject reply.fault and end the response; says who ended it."""
        if reply.fault == "drop":
            writer.transport.abort()
            return "fault"
        if reply.fault == "stall":
            # Send nothing more; the client's read timeout (or Stop) ends it.
            await asyncio.wait({watcher}, timeout=reply.stall_seconds)
            return "client_closed" if watcher.done() else "fault"
        if reply.fault == "error_event":
            error = {"error": {"message": reply.error_message, "type": "server_error"}}
            await self._event(writer, json.dumps(error).encode())
        elif reply.fault == "bad_json":
            await self._event(writer, b'{"choices": [{"delta": {"content": "oops')
        # "truncate" sends nothing more: a clean end of body with no finish_reason and no [DONE].
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return "fault"

    @staticmethod
    async def _event(writer: asyncio.StreamWriter, data: bytes, split_utf8: bool = False) -> None:
        payload = b"data: " + data + b"\n\n"
        # A continuation byte (10xxxxxx) is inside a character: cutting before it splits the character.
        cut = next((i for i, byte in enumerate(payload) if byte & 0xC0 == 0x80), 0) if split_utf8 else 0
        for part in (payload[:cut], payload[cut:]) if cut else (payload,):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            if cut:
                await asyncio.sleep(0.01)  # so the client reads the halves apart

    @staticmethod
    async def _send_json(
        writer: asyncio.StreamWriter, status: int, body: dict, headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{extra}Connection: keep-alive\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()

    @staticmethod
    def _completion(request: RecordedRequest, text: str, finish_reason: str | None) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": request.body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason or "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(split_tokens(text)), "total_tokens": 0},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8911)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between chunks of an echo reply")
    args = parser.parse_args()
    server = FakeOpenAI(port=args.port)
    server.default = Reply(delay=args.delay)
    with server:
        print(f"Fake OpenAI-compatible server on {server.base_url} (Ctrl+C stops it)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
