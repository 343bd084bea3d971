"""Traces end to end: the real processes (gunicorn web, relay, consumer, RQ worker) export OTLP over
HTTP to a receiver the test runs, which decodes what they send (opentelemetry-proto)."""

import json
import logging
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from orders_app.adapters.otel_exporter import WarnOnce

from support.network import closed_port_url, free_port
from support.polling import wait_for
from support.stack import running_stack, signed_in

TRACED = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "100"}


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver: ``spans`` are dicts of what every process sent to ``/v1/traces``."""

    def __init__(self, port=0):
        self.spans, self.lock = [], threading.Lock()
        super().__init__(("127.0.0.1", port), CollectorHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def receive(self, request):
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            {
                                "service": resource["service.name"],
                                "resource": resource,
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                            }
                        )

    def find(self, **wanted):
        """The spans with these fields; ``attributes`` given as a dict match a subset."""
        attributes = wanted.pop("attributes", {})
        with self.lock:
            return [
                span
                for span in self.spans
                if all(span[key] == value for key, value in wanted.items())
                and all(span["attributes"].get(key) == value for key, value in attributes.items())
            ]


def _value(any_value):
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


class CollectorHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.receive(request)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@contextmanager
def running_collector(port=0):
    server = Collector(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def collector():
    with running_collector() as server:
        yield server


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.system
def test_one_order_is_one_trace_across_every_process(database, broker, tmp_path, collector):
    with running_stack(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, **TRACED) as stack:
        auth = {**signed_in(stack, "traced@example.com"), "X-Request-ID": "traced-request-1"}
        status, order = stack.call(
            "POST", "/orders/", {"items": [{"name": "Tea", "quantity": 1, "price": "2.50"}]}, headers=auth
        )
        assert status == 201
        order_id = order["id"]
        [job] = wait_for(
            lambda: collector.find(name="run process_order", attributes={"orders.order_id": order_id}),
            timeout=30,
            message="the worker's span",
        )
        trace_id = job["trace_id"]
        wait_for(lambda: collector.find(trace_id=trace_id, name="UPDATE"), message="the worker's UPDATE span")
        logs = {name: stack.log(name) for name in stack.logs}

    spans = {span["span_id"]: span for span in collector.find(trace_id=trace_id)}

    def one(**wanted):
        [span] = [s for s in spans.values() if all(s[k] == v for k, v in wanted.items())]
        return span

    request = one(name="POST /orders/")
    assert request["service"] == "orders-web" and request["parent"] == ""  # the trace's root
    assert request["resource"]["service.version"] == "1.0"
    assert request["resource"]["service.instance.id"]
    insert = [s for s in spans.values() if s["name"] == "INSERT" and "INTO orders" in str(s["attributes"])]
    assert [s["parent"] for s in insert] == [request["span_id"]]
    publish = one(name="publish new_order")
    assert publish["service"] == "orders-relay" and publish["parent"] == request["span_id"]
    [(batch_trace, batch_span)] = publish["links"]
    [batch] = collector.find(span_id=batch_span, name="relay batch")  # a trace of its own...
    assert batch["trace_id"] == batch_trace != trace_id
    assert (trace_id, request["span_id"]) in batch["links"]  # ...linked to the trace of each event
    handling = one(name="process new_order")  # its parent came in the message's headers
    assert handling["service"] == "orders-consumer" and handling["parent"] == publish["span_id"]
    enqueue = one(name="enqueue process_order")
    assert enqueue["service"] == "orders-consumer" and enqueue["parent"] == handling["span_id"]
    # The jobs of a batch go to Redis together, in a trace of its own linked to each job's enqueue.
    [write] = [
        s for s in collector.find(name="enqueue batch") if (trace_id, enqueue["span_id"]) in s["links"]
    ]
    assert write["service"] == "orders-consumer" and write["trace_id"] != trace_id
    assert collector.find(trace_id=write["trace_id"], parent=write["span_id"])  # its Redis commands
    assert job["service"] == "orders-worker" and job["parent"] == enqueue["span_id"]
    assert one(name="UPDATE")["parent"] == job["span_id"]

    # Each process logged about the order with the trace's id, and the span in hand's.
    for name, text in logs.items():
        lines = [line for line in json_lines(text) if line.get("request_id") == "traced-request-1"]
        assert lines and all(line["trace_id"] == trace_id for line in lines), (name, lines)
        assert {line["span_id"] for line in lines} <= set(spans), name


@pytest.mark.system
def test_an_unreachable_collector_changes_nothing_but_one_warning(database, broker, tmp_path):
    settings = {
        **TRACED,
        "OTEL_EXPORTER_OTLP_ENDPOINT": closed_port_url("http"),
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    with running_stack(tmp_path, **settings) as stack:
        auth = signed_in(stack, "untraced@example.com")
        orders = []
        for _ in range(3):
            status, order = stack.call(
                "POST", "/orders/", {"items": [{"name": "Tea", "quantity": 1, "price": "2.50"}]}, headers=auth
            )
            assert status == 201
            orders.append(order["id"])
            # Processed one after the other: each process exports (and fails) several batches.
            wait_for(
                lambda: stack.call("GET", f"/orders/{orders[-1]}/", headers=auth)[1]["processed_at"],
                timeout=30,
            )
        warning = "Cannot export traces"
        for name in stack.logs:
            wait_for(lambda name=name: warning in stack.log(name), timeout=20, message=f"{name}'s warning")
    for name in stack.logs:
        assert stack.log(name).count(warning) == 1, (name, stack.log(name)[-3000:])


def test_export_failures_are_logged_once_and_the_recovery_too(caplog):
    port = free_port()
    exporter = WarnOnce(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1))
    span = TracerProvider().get_tracer("test").start_span("a span")
    span.end()
    with caplog.at_level(logging.INFO, logger="orders_app.tracing"):
        assert [exporter.export([span]) for _ in range(3)] == [SpanExportResult.FAILURE] * 3
        with running_collector(port) as collector:
            assert [exporter.export([span]) for _ in range(2)] == [SpanExportResult.SUCCESS] * 2
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "Cannot export traces to the collector",
        "Exporting traces again",
    ]
    assert [s["name"] for s in collector.spans] == ["a span", "a span"]
