"""OpenTelemetry: `python app.py` with the standard OTEL_* variables exports each turn's trace and metrics in the GenAI
semantic conventions to a real OTLP/HTTP receiver on loopback (testkit/otlp_receiver.py, decoding with
opentelemetry-proto), and never a secret."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from pages.owners import COOKIE, issue
from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.otlp_receiver import OTLPReceiver, ReceivedSpan
from testkit.processes import ROOT, app_running, base_env, free_port
from testkit.support import SENTINEL_KEY, answer_text, message

AGENT = "invoke_agent streaming-chat"
CHAT = "chat fake-model"
INTERNAL, CLIENT = 1, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
UNSET, ERROR = 0, 2  # opentelemetry.proto.trace.v1.Status.StatusCode


@contextlib.contextmanager
def traced_app(
    fake_server: FakeOpenAI, folder: Path, traces_only: bool = False, **otel: str
) -> Iterator[tuple[str, OTLPReceiver, list[str]]]:
    """The app with tracing on, its MCP test tools, and the receiver it exports to: (its URL, the receiver, output).
    traces_only: only the traces' own endpoint variable is set, as for a viewer that takes no metrics."""
    receiver = OTLPReceiver().start()
    mcp = folder / "mcp.json"
    tools = {"command": sys.executable, "args": ["-m", "testkit.mcp_tools_server"], "cwd": str(ROOT)}
    mcp.write_text(json.dumps({"mcpServers": {"test": tools}}))
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url}
    if traces_only:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{receiver.endpoint}/v1/traces"
    else:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    env |= {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    env |= {"OTEL_METRIC_EXPORT_INTERVAL": "500", **otel}
    try:
        with app_running(env, "--model", "fake-model", "--rate-limit", "0", "--mcp", str(mcp)) as (_, seen):
            yield f"http://127.0.0.1:{port}/", receiver, seen
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def app(fake_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, OTLPReceiver]]:
    with traced_app(fake_server, tmp_path_factory.mktemp("traced")) as (url, receiver, seen):
        where = f"traces to {receiver.endpoint}/v1/traces, metrics to {receiver.endpoint}/v1/metrics (OTLP/HTTP)"
        assert f"OpenTelemetry: {where}, without message content" in "".join(seen)
        yield url, receiver


def visitor(url: str) -> Client:
    """A visitor who returns (an owner cookie), so the turn is in a kept conversation."""
    return Client(url, verbose=False, headers={"Cookie": f"{COOKIE}={issue()}"})


def settled(receiver: OTLPReceiver, quiet: float = 1.0) -> int:
    """How many spans have arrived once none has for `quiet` seconds (ten export periods): an earlier test's turn
    can still be sending its spans when the next test begins, and they must not be taken for the new turn's."""
    count, since = len(receiver.spans), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        if len(receiver.spans) != count:
            count, since = len(receiver.spans), time.monotonic()
    return count


def spans_for(receiver: OTLPReceiver, count: int, before: int) -> list[ReceivedSpan]:
    """The `count` spans that arrived after the first `before`, once they are there."""
    return receiver.wait_for(lambda r: r.spans[before : before + count] if len(r.spans) >= before + count else None)


def test_a_turn_is_an_agent_span_over_one_chat_span_per_model_request(app, fake_server: FakeOpenAI):
    url, receiver = app
    before = settled(receiver)
    client = visitor(url)
    fake_server.enqueue(Reply(tokens=["Hello", " there", "."], delay=0.05))
    assert answer_text(client.predict(message("Say hello"), api_name="/chat")) == "Hello there."
    chat, agent = spans_for(receiver, 2, before)  # a child ends (and is sent) before its parent
    assert (agent.name, agent.kind, agent.parent_id, agent.status) == (AGENT, INTERNAL, "", UNSET)
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "streaming-chat"
    assert agent.service == "streaming-chat"
    conversation = agent.attributes["gen_ai.conversation.id"]
    assert (chat.name, chat.kind, chat.parent_id, chat.trace_id) == (CHAT, CLIENT, agent.span_id, agent.trace_id)
    assert chat.status == UNSET  # success leaves it unset
    sent = fake_server.requests[-1].body
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "fake-model",
        "gen_ai.request.temperature": sent["temperature"],
        "gen_ai.request.top_p": sent["top_p"],
        "gen_ai.request.max_tokens": sent["max_tokens"],
        "gen_ai.request.stream": True,
        "gen_ai.response.model": "fake-model",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.output_tokens": 3,  # the loopback server's count: one a chunk
        "server.address": "127.0.0.1",
    }
    assert {k: chat.attributes.get(k) for k in expected} == expected
    assert chat.attributes["gen_ai.usage.input_tokens"] > 2  # the system prompt's words and the message's
    assert chat.attributes["server.port"] == int(fake_server.base_url.split(":")[-1].split("/")[0])
    assert 0 < chat.attributes["gen_ai.response.time_to_first_chunk"] < 5
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system")) for k in chat.attributes)

    fake_server.enqueue(Reply(text="Again."))
    history = client.predict(message("Once more"), api_name="/chat")
    assert answer_text(history) == "Again."
    _, again = spans_for(receiver, 2, before + 2)
    assert again.attributes["gen_ai.conversation.id"] == conversation  # the same conversation
    assert again.trace_id != agent.trace_id  # a trace per turn
    assert not any(SENTINEL_KEY.encode() in body for body in receiver.bodies)


def output_tokens(r: OTLPReceiver) -> int:
    """The output tokens the app has counted so far (the points are cumulative: the newest has them all)."""
    usage = r.metrics.get("gen_ai.client.token.usage", [])
    return max((p["sum"] for p in usage if p["attributes"]["gen_ai.token.type"] == "output"), default=0)


def test_each_request_records_its_token_usage_and_duration_as_metrics(app, fake_server: FakeOpenAI):
    url, receiver = app
    time.sleep(1.5)  # three export periods: what earlier tests' turns recorded has been sent
    counted = output_tokens(receiver)
    fake_server.enqueue(Reply(tokens=["a ", "b ", "c ", "d "]))
    assert answer_text(visitor(url).predict(message("Count"), api_name="/chat")) == "a b c d "
    receiver.wait_for(lambda r: output_tokens(r) == counted + 4)  # the turn's 4
    usage = receiver.metrics["gen_ai.client.token.usage"]
    duration = receiver.metrics["gen_ai.client.operation.duration"]
    assert {p["attributes"]["gen_ai.token.type"] for p in usage} == {"input", "output"}
    assert {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "fake-model",
        "gen_ai.response.model": "fake-model",
    }.items() <= usage[-1]["attributes"].items()
    assert duration[-1]["count"] >= 1 and duration[-1]["sum"] > 0
    assert duration[-1]["attributes"]["gen_ai.request.model"] == "fake-model"


def test_a_failed_request_is_an_error_span_with_its_type_and_the_turn_fails_with_it(app, fake_server: FakeOpenAI):
    url, receiver = app
    before = settled(receiver)
    fake_server.enqueue(Reply(tokens=["Part", "ial", " text"], fault="error_event", fault_after=2))
    shown = visitor(url).predict(message("Break"), api_name="/chat")
    assert "Partial" in json.dumps(shown)
    chat, agent = spans_for(receiver, 2, before)
    assert (chat.name, chat.status, chat.attributes["error.type"]) == (CHAT, ERROR, "APIError")
    assert (agent.name, agent.status, agent.attributes["error.type"]) == (AGENT, ERROR, "APIError")

    before = settled(receiver)
    fake_server.enqueue(Reply(tokens=["Cut", " short"], fault="truncate", fault_after=1))
    visitor(url).predict(message("Cut"), api_name="/chat")
    chat, agent = spans_for(receiver, 2, before)
    assert (chat.status, chat.attributes["error.type"]) == (ERROR, "IncompleteReply")  # no finish reason came
    assert "gen_ai.response.finish_reasons" not in chat.attributes


def test_a_tool_turn_has_a_span_per_call_between_its_model_requests(app, fake_server: FakeOpenAI):
    url, receiver = app
    before = settled(receiver)
    calls = [ToolCall("echo", '{"text": "ping"}', "call_echo"), ToolCall("fail", '{"reason": "boom"}', "call_fail")]
    fake_server.enqueue(Reply(tool_calls=calls), Reply(text="Done."))
    assert answer_text(visitor(url).predict(message("Use tools"), api_name="/chat")).endswith("Done.")
    spans = spans_for(receiver, 5, before)
    [agent] = [s for s in spans if s.name == AGENT]
    assert all(s.parent_id == agent.span_id for s in spans if s is not agent)
    by_name = {s.name: s for s in spans}
    assert [s.name for s in spans if s.name == CHAT] == [CHAT, CHAT]
    first = next(s for s in spans if s.name == CHAT)  # the first ends first
    assert first.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    echo, fail = by_name["execute_tool echo"], by_name["execute_tool fail"]
    assert echo.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "echo",
        "gen_ai.tool.call.id": "call_echo",
        "gen_ai.tool.type": "function",
    }  # no arguments or result without the content variable
    assert (echo.status, fail.status, fail.attributes["error.type"]) == (UNSET, ERROR, "tool_error")
    assert agent.status == UNSET  # a failed call is the model's to read, not a failed turn


def test_message_content_only_when_the_variable_says_so_with_secrets_masked(fake_server: FakeOpenAI, tmp_path: Path):
    capture = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    with traced_app(fake_server, tmp_path, traces_only=True, **capture) as (url, receiver, seen):
        assert f"OpenTelemetry: traces to {receiver.endpoint}/v1/traces (OTLP/HTTP), with message content." in "".join(
            seen
        )
        fake_server.enqueue(Reply(tool_calls=[ToolCall("echo", json.dumps({"text": SENTINEL_KEY}), "c1")]))
        fake_server.enqueue(Reply(text=f"Your key is {SENTINEL_KEY}."))
        visitor(url).predict(message(f"Echo {SENTINEL_KEY}"), api_name="/chat")
        spans = spans_for(receiver, 4, 0)
        first, tool, second = (s for s in spans if s.name != AGENT)
        asked = json.loads(first.attributes["gen_ai.input.messages"])
        assert asked[-1] == {"role": "user", "parts": [{"type": "text", "content": "Echo [redacted]"}]}
        assert json.loads(first.attributes["gen_ai.system_instructions"])[0]["type"] == "text"
        [called] = json.loads(first.attributes["gen_ai.output.messages"])
        assert called["finish_reason"] == "tool_calls"
        assert called["parts"] == [  # the loopback server says what it was asked before calling
            {"type": "text", "content": "Echo: Echo [redacted]"},
            {"type": "tool_call", "id": "c1", "name": "echo", "arguments": '{"text": "[redacted]"}'},
        ]
        assert tool.attributes["gen_ai.tool.call.arguments"] == '{"text": "[redacted]"}'
        assert "[redacted]" in tool.attributes["gen_ai.tool.call.result"]
        sent_back = json.loads(second.attributes["gen_ai.input.messages"])[-1]
        assert sent_back["role"] == "tool" and sent_back["parts"][0]["id"] == "c1"
        [answered] = json.loads(second.attributes["gen_ai.output.messages"])
        assert answered["parts"] == [{"type": "text", "content": "Your key is [redacted]."}]
        assert not any(SENTINEL_KEY.encode() in body for body in receiver.bodies)


@pytest.mark.parametrize(
    "otel",
    [
        {},
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        },
    ],
    ids=["no variable", "both exporters none"],
)
def test_without_an_endpoint_nothing_is_exported_and_the_sdk_is_not_loaded(otel: dict[str, str]):
    loaded = (
        "import sys, app; from core import tracing; "
        "print(tracing.configure(), any('opentelemetry.sdk' in m for m in sys.modules))"
    )
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **otel}
    out = subprocess.run([sys.executable, "-c", loaded], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["None", "False"], out.stderr
