"""OpenTelemetry traces and metrics of each turn in the GenAI semantic conventions: off, and free, unless configured."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

if TYPE_CHECKING:
    from core.events import GenerationParams
    from core.history import Message
    from core.reply import Reply

AGENT = "streaming-chat"  # the turn span's agent, and the default service.name
CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"  # message content only when this says so
CAPTURE_ON = {"true", "1", "span_only", "span_and_event"}  # its values that put content on the spans


class ToolCall(Protocol):
    """What a tool call's span reads of it (core.turn.ToolCall, which imports this module)."""

    name: str
    id: str
    arguments: str
    status: str  # "failed" once it failed
    result: str


def _instruments(meter: metrics.Meter) -> tuple[metrics.Histogram, metrics.Histogram]:
    """The conventions' two client metrics, with their bucket boundaries."""
    usage = meter.create_histogram(
        "gen_ai.client.token.usage",
        unit="{token}",
        description="Number of input and output tokens used",
        explicit_bucket_boundaries_advisory=[4**n for n in range(14)],
    )
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration",
        unit="s",
        description="GenAI operation duration",
        explicit_bucket_boundaries_advisory=[0.01 * 2**n for n in range(14)],
    )
    return usage, duration


# OpenTelemetry's no-op tracer and instruments until configure(): a few calls per model step, none per token.
_tracer: trace.Tracer = trace.NoOpTracer()
_token_usage, _duration = _instruments(metrics.NoOpMeter(AGENT))
_capture = False


def configure() -> str | None:
    """Export traces and metrics over OTLP/HTTP where the standard variables say (the SDK reads the rest: headers,
    timeouts, OTEL_SERVICE_NAME, ...). The startup line saying where; None when neither is exported."""
    global _tracer, _token_usage, _duration, _capture
    traces_to, metrics_to = _endpoint("TRACES"), _endpoint("METRICS")
    if not (traces_to or metrics_to) or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    # Imported only here: with tracing off the app loads no SDK.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or AGENT})
    # Providers of our own, not the global ones: through those, FastAPI (under Gradio) and the MCP SDK would
    # trace every HTTP request of the page's queue too. Their exit hooks send what is left as the app stops.
    if traces_to:
        traces = TracerProvider(resource=resource)
        traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_to)))
        _tracer = traces.get_tracer(AGENT)
    if metrics_to:
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=metrics_to))
        _token_usage, _duration = _instruments(
            MeterProvider(resource=resource, metric_readers=[reader]).get_meter(AGENT)
        )
    _capture = os.environ.get(CAPTURE, "").lower() in CAPTURE_ON
    content = "with message content" if _capture else f"without message content ({CAPTURE} not set)"
    where = [f"{signal} to {_said(url)}" for signal, url in (("traces", traces_to), ("metrics", metrics_to)) if url]
    return f"OpenTelemetry: {', '.join(where)} (OTLP/HTTP), {content}."


def _endpoint(signal: str) -> str | None:
    """Where the OTLP exporter sends a signal ("TRACES" or "METRICS"), as the SDK reads the variables; None: nowhere."""
    if os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").lower() == "none":
        return None
    if url := os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"):
        return url
    if url := os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return f"{url.rstrip('/')}/v1/{signal.lower()}"
    return None


def _said(url: str) -> str:
    """An endpoint without what could be a secret in it: a user and password, a query."""
    given = urlsplit(url)
    return f"{given.scheme}://{given.hostname}{f':{given.port}' if given.port else ''}{given.path}"


def error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


class TurnTrace:
    """One turn's spans: its own (the conversation's id on it), and under it one per model step and tool call."""

    def __init__(
        self, provider: str, base_url: str | None, conversation: str | None, redact: Callable[[str], str]
    ) -> None:
        self._common: dict[str, Any] = {"gen_ai.provider.name": provider}
        if base_url and (where := urlsplit(base_url)).hostname:
            self._common["server.address"] = where.hostname
            if where.port:
                self._common["server.port"] = where.port
        self._redact = redact
        attributes = {**self._common, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT}
        if conversation:
            attributes["gen_ai.conversation.id"] = conversation
        self.span = _tracer.start_span(f"invoke_agent {AGENT}", kind=SpanKind.INTERNAL, attributes=attributes)
        self._under = trace.set_span_in_context(self.span)  # the parent of its steps (not the current span:
        # the turn is an async generator, and a context set across its yields would leak into its caller's)

    def failed(self, exc: BaseException) -> None:
        _failed(self.span, error_type(exc), self._redact(str(exc)))

    def end(self) -> None:
        self.span.end()

    @contextmanager
    def model_step(self, messages: list[Message], params: GenerationParams, reply: Reply) -> Iterator[None]:
        """The span of one request to the model, `reply` being what it streams into."""
        model = params.model or ""
        attributes = {
            **self._common,
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": params.temperature,
            "gen_ai.request.top_p": params.top_p,
            "gen_ai.request.max_tokens": params.max_tokens,
            "gen_ai.request.stream": True,
        }
        if _capture:
            system = [_text(m["content"]) for m in messages if m["role"] == "system"]
            if system:
                attributes["gen_ai.system_instructions"] = json.dumps([_part(self._redact(t)) for t in system])
            rest = [m for m in messages if m["role"] != "system"]
            attributes["gen_ai.input.messages"] = json.dumps([self._message(m) for m in rest])
        span = _tracer.start_span(f"chat {model}", context=self._under, kind=SpanKind.CLIENT, attributes=attributes)
        started, error, stopped = time.monotonic(), None, False
        try:
            yield
        except Exception as exc:
            error = error_type(exc)
            _failed(span, error, self._redact(str(exc)))
            raise
        except BaseException:  # Stop (the turn closed or cancelled): it ends as it is, without an error
            stopped = True
            raise
        finally:
            self._model_ended(span, reply, model, started, error, stopped)

    def _model_ended(
        self, span: Span, reply: Reply, model: str, started: float, error: str | None, stopped: bool
    ) -> None:
        if reply.first_token is not None:
            span.set_attribute("gen_ai.response.time_to_first_chunk", reply.first_token - reply.started)
        served = reply.model or model
        if reply.model:
            span.set_attribute("gen_ai.response.model", reply.model)
        if reply.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [reply.finish_reason])
        elif error is None and not stopped:  # the stream ended without saying it was whole
            error = "IncompleteReply"
            _failed(span, error, "The stream ended without a finish reason.")
        labels = {**self._common, "gen_ai.operation.name": "chat", "gen_ai.request.model": model}
        labels["gen_ai.response.model"] = served
        if reply.usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", reply.usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", reply.usage.completion_tokens)
            _token_usage.record(reply.usage.prompt_tokens, {**labels, "gen_ai.token.type": "input"})
            _token_usage.record(reply.usage.completion_tokens, {**labels, "gen_ai.token.type": "output"})
        if _capture:
            output = {"role": "assistant", "parts": self._reply_parts(reply)}
            if reply.finish_reason:
                output["finish_reason"] = reply.finish_reason
            span.set_attribute("gen_ai.output.messages", json.dumps([output]))
        _duration.record(time.monotonic() - started, {**labels, **({"error.type": error} if error else {})})
        span.end()

    @contextmanager
    def tool_call(self, call: ToolCall) -> Iterator[None]:
        """The span of one tool call; it failed when the call's status says so once it is done."""
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        if _capture:
            attributes["gen_ai.tool.call.arguments"] = self._redact(call.arguments)
        span = _tracer.start_span(
            f"execute_tool {call.name}", context=self._under, kind=SpanKind.INTERNAL, attributes=attributes
        )
        try:
            yield
            if call.status == "failed":
                _failed(span, "tool_error", self._redact(call.result))
            if _capture:
                span.set_attribute("gen_ai.tool.call.result", self._redact(call.result))
        except Exception as exc:
            _failed(span, error_type(exc), self._redact(str(exc)))
            raise
        finally:
            span.end()

    def _message(self, message: Message) -> dict:
        """A provider message in the conventions' shape: its role and parts, secrets masked."""
        if message["role"] == "tool":
            response = {"type": "tool_call_response", "id": message.get("tool_call_id", "")}
            return {"role": "tool", "parts": [{**response, "response": self._redact(_text(message["content"]))}]}
        parts = [_part(self._redact(text))] if (text := _text(message.get("content"))) else []
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            named = {"type": "tool_call", "id": call.get("id", ""), "name": function.get("name", "")}
            parts.append({**named, "arguments": self._redact(function.get("arguments", ""))})
        return {"role": message["role"], "parts": parts}

    def _reply_parts(self, reply: Reply) -> list[dict]:
        parts = [{"type": "reasoning", "content": self._redact(reply.reasoning)}] if reply.reasoning else []
        if reply.text:
            parts.append(_part(self._redact(reply.text)))
        for _, draft in sorted(reply.tool_calls.items()):
            arguments = self._redact(draft.arguments)
            parts.append({"type": "tool_call", "id": draft.id, "name": draft.name, "arguments": arguments})
        return parts


def _failed(span: Span, error: str, description: str) -> None:
    span.set_attribute("error.type", error)
    span.set_status(StatusCode.ERROR, description)


def _part(text: str) -> dict:
    return {"type": "text", "content": text}


def _text(content: object) -> str:
    """A message's text: a string, or its text parts (images are left out)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""
