"""Traces: OpenTelemetry, set up once per process from OpenTelemetry's standard ``OTEL_*`` variables.

Off unless ``OTEL_TRACES_EXPORTER`` is set: ``otlp`` sends OTLP over HTTP to
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``console`` prints the spans. Off, not even the SDK is imported:
the spans below come from the API's no-op tracer, and a request runs the code it ran before but
for a flag's check (``carrier``) and a comparison per log line (``orders_app.log.span_ids``).

One order is one trace. Its W3C trace context (``traceparent``, ``tracestate``) crosses each
asynchronous hop as a carrier (a dict of headers): the outbox row keeps the request's, the relay's
publish continues it and the AMQP message headers carry the publish's on, the consumer
continues those and the RQ job's meta keeps the context of its enqueue, the worker continues that
around the job. Each hop is a child of the one before (docs: decision 0028 says why not a link).
"""

import importlib
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes

from . import log as service_log

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

tracer = trace.get_tracer("orders_app")
enabled = False  # set by setup()

# What each process instruments (opentelemetry-python-contrib); the rest of its spans are ours.
# Left out on purpose: Redis in the relay and the worker, PostgreSQL in the relay, whose idle
# loops (RQ's polling and heartbeats, the relay's sweeps) would each make a trace of their own;
# pika's, which gives each publish on a BlockingChannel two nested spans (it instruments the
# channel and the one under it) and leaves a message's context attached until the next one.
INSTRUMENTATIONS = {
    "orders-web": ("flask.FlaskInstrumentor", "psycopg2.Psycopg2Instrumentor", "redis.RedisInstrumentor"),
    "orders-relay": (),
    "orders-consumer": ("redis.RedisInstrumentor",),
    "orders-worker": ("psycopg2.Psycopg2Instrumentor",),
}


def setup(service: str) -> None:
    """Trace this process as ``service`` (a key of ``INSTRUMENTATIONS``; ``OTEL_SERVICE_NAME`` wins),
    if ``OTEL_TRACES_EXPORTER`` says so. Call it once, in the process that does the work: a
    gunicorn worker after the fork (the exporter's thread does not survive one)."""
    global enabled
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        return
    from opentelemetry.sdk.resources import (
        SERVICE_INSTANCE_ID,
        SERVICE_NAME,
        SERVICE_VERSION,
        OTELResourceDetector,
        Resource,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from .adapters.otel_exporter import WarnOnce
    from .config import Defaults

    defaults = {
        SERVICE_NAME: service,
        SERVICE_VERSION: Defaults.API_VERSION,
        SERVICE_INSTANCE_ID: f"{socket.gethostname()}-{os.getpid()}",
    }
    # The environment's resource attributes (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME) win.
    resource = Resource.create(defaults).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER and its argument
    provider.add_span_processor(BatchSpanProcessor(WarnOnce(_exporter(exporter_name))))  # OTEL_BSP_*
    trace.set_tracer_provider(provider)
    for path in INSTRUMENTATIONS[service]:
        module, name = path.rsplit(".", 1)
        getattr(importlib.import_module(f"opentelemetry.instrumentation.{module}"), name)().instrument()
    service_log.span_ids = span_ids
    enabled = True


def _exporter(name: str) -> "SpanExporter":
    if name == "otlp":  # OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT, ... and their _TRACES_ forms
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise RuntimeError(
        f"OTEL_TRACES_EXPORTER={name} is not supported: use otlp (OTLP over HTTP), console or none"
    )


def span_ids() -> dict[str, str]:
    """The log fields of the active span: ``trace_id`` and ``span_id`` in hex, as trace viewers show them."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def carrier() -> dict[str, str] | None:
    """The active span's context as W3C headers (``traceparent``, ``tracestate``), or ``None``
    when there is none. Tracing off, it returns at once: a new order pays nothing for it."""
    if not enabled:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers or None


@contextmanager
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: object = None,
    links: Iterable[object] = (),
    attributes: Attributes = None,
) -> Iterator[Span]:
    """A span of ours, the child of ``parent`` (a carrier, as ``carrier()`` gives) when given, else
    of the active span; ``links`` are carriers too. Exceptions are recorded on it."""
    context = _extract(parent) if parent else None
    span_links = [Link(trace.get_current_span(_extract(c)).get_span_context()) for c in links if c]
    with tracer.start_as_current_span(name, context, kind, attributes, span_links) as current:
        yield current


def start_span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, parent: object = None, attributes: Attributes = None
) -> Span:
    """``span``'s span, started but not made current nor ended: for work on several messages at
    once, each message's span made current in turn (``opentelemetry.trace.use_span``)."""
    return tracer.start_span(name, _extract(parent) if parent else None, kind, attributes)


def _extract(carrier: object) -> Context | None:
    """The context a carrier holds. Its text values only: a carrier comes from a message's headers
    or a job's meta, which anyone who can publish or write to Redis sets, and the propagators
    raise on a value that is not text (a message that crashed every consumer)."""
    if not isinstance(carrier, dict):
        return None
    return propagate.extract({k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str)})
