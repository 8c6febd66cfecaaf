"""An OTLP/HTTP receiver on loopback for the tracing tests: it decodes what exporters post with opentelemetry-proto."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class ReceivedSpan:
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 3 client
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    status: int  # opentelemetry.proto.trace.v1.Status.StatusCode: 0 unset, 1 ok, 2 error
    service: str


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass
class OTLPReceiver:
    """Spans and metric names as they arrive, and every request body raw (to look for what must not be there)."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    metrics: dict[str, list[dict]] = field(default_factory=dict)  # histogram points by name
    bodies: list[bytes] = field(default_factory=list)
    port: int = 0  # 0: any free one
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._received(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OTLPReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def serve(self) -> None:
        """In this thread, until the process is ended."""
        self._server.serve_forever()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _received(self, path: str, body: bytes) -> None:
        with self._lock:
            self.bodies.append(body)
            if path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = {a.key: _value(a.value) for a in resource.resource.attributes}.get("service.name")
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            self.spans.append(
                                ReceivedSpan(
                                    span.name,
                                    span.kind,
                                    span.trace_id.hex(),
                                    span.span_id.hex(),
                                    span.parent_span_id.hex(),
                                    {a.key: _value(a.value) for a in span.attributes},
                                    span.status.code,
                                    service,
                                )
                            )
            elif path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        for metric in scope.metrics:
                            points = [
                                {"attributes": {a.key: _value(a.value) for a in point.attributes},
                                 "count": point.count, "sum": point.sum}
                                for point in metric.histogram.data_points
                            ]  # fmt: skip
                            self.metrics.setdefault(metric.name, []).extend(points)

    def wait_for(self, found: Callable[[OTLPReceiver], Any], timeout: float = 20) -> Any:
        """What `found` gives once it gives something truthy; AssertionError with what arrived after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if result := found(self):
                    return result
            time.sleep(0.1)
        names = [span.name for span in self.spans]
        raise AssertionError(f"Not received in {timeout} s; spans: {names}, metrics: {list(self.metrics)}")


if __name__ == "__main__":  # python -m testkit.otlp_receiver --port N: the benchmark's receiver, in its own process
    import argparse

    parser = argparse.ArgumentParser(description="An OTLP/HTTP receiver on loopback that decodes what it is sent.")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    OTLPReceiver(port=port).serve()
