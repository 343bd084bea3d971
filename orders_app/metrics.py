"""Prometheus metrics: every metric of the service, and how each process serves them.

The web serves ``GET /metrics``. Under gunicorn its workers write their counters to files in
``PROMETHEUS_MULTIPROC_DIR`` (set by gunicorn.conf.py before this module is imported) and a
scrape adds them up, so the numbers do not depend on which worker answers. The relay, consumer
and worker are single processes: they serve their own counters on ``METRICS_PORT``.

The gauges of shared state (outbox, unprocessed orders, RQ registries) are read from
PostgreSQL and Redis when the web is scraped, each read bounded by ``METRICS_READ_TIMEOUT``;
a read that fails leaves its gauges out of that scrape.
"""

import logging
import os

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from .database import bounded_connection
from .extensions import queue_redis
from .models import Order, OutboxEvent

log = logging.getLogger(__name__)

# No `_created` series: counters are read with rate() and increase(), which do not need them.
disable_created_metrics()

HTTP_REQUESTS = Counter("http_requests_total", "Requests answered.", ["method", "route", "status"])
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer a request.", ["method", "route"]
)
ORDERS_CREATED = Counter("orders_created_total", "Orders created (idempotent replays excluded).")
EVENTS_PUBLISHED = Counter("orders_events_published_total", "Outbox events the broker confirmed.")
EVENTS_DEAD_LETTERED = Counter(
    "orders_events_dead_lettered_total", "Malformed messages the consumer rejected (dead-lettered)."
)
JOBS_ENQUEUED = Counter("orders_jobs_enqueued_total", "process_order jobs the consumer enqueued.")
ORDERS_PROCESSED = Counter("orders_processed_total", "Orders whose processed_at this process set.")
RECONCILED = Counter("orders_reconciled_total", "process_order jobs given again by the reconciler.")

# Label values stay few: unknown methods and paths that match no route share one value each.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
UNMATCHED_ROUTE = "unmatched"
RQ_STATES = ("queued", "started", "scheduled", "failed")
# (method, route, status) -> that request's counter and histogram. Finding them with labels() on
# every request cost more than updating them (under wrk: +42 µs of CPU per request, +16 with this).
_request_series = {}


def observe_request(request, status, seconds):
    """Count an answered request under its URL rule (never the raw path) and time it."""
    method = request.method if request.method in KNOWN_METHODS else "other"
    route = request.url_rule.rule if request.url_rule else UNMATCHED_ROUTE
    key = (method, route, status)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = (
            HTTP_REQUESTS.labels(method, route, status),
            HTTP_REQUEST_DURATION.labels(method, route),
        )
    requests, duration = series
    requests.inc()
    duration.observe(seconds)


class StateCollector:
    """Gauges of the shared state, read from PostgreSQL and Redis at each scrape (in a request)."""

    def collect(self):
        yield from self._read(self._database)
        yield from self._read(self._rq_jobs)

    @staticmethod
    def _read(read, *args):
        """The metric families ``read(*args)`` returns, or none when it fails (logged)."""
        try:
            return read(*args)
        except Exception as error:  # whatever failed, it drops these gauges, never the scrape
            log.warning("Metrics: cannot read %s: %r", read.__name__.strip("_"), error)
            return []

    def _database(self):
        """The PostgreSQL gauges, read on one connection."""
        with bounded_connection(current_app.config["METRICS_READ_TIMEOUT"]) as connection:
            return [*self._read(self._outbox, connection), *self._read(self._unprocessed_orders, connection)]

    def _outbox(self, connection):
        pending, age = self._count_and_oldest_age(connection, OutboxEvent, OutboxEvent.published_at)
        return [
            GaugeMetricFamily("orders_outbox_pending", "Outbox events not yet published.", pending),
            GaugeMetricFamily(
                "orders_outbox_oldest_pending_age_seconds",
                "Age of the oldest unpublished outbox event (0 when none).",
                age,
            ),
        ]

    def _unprocessed_orders(self, connection):
        unprocessed, age = self._count_and_oldest_age(connection, Order, Order.processed_at)
        return [
            GaugeMetricFamily("orders_unprocessed", "Orders without processed_at.", unprocessed),
            GaugeMetricFamily(
                "orders_unprocessed_oldest_age_seconds",
                "Age of the oldest order without processed_at (0 when none).",
                age,
            ),
        ]

    def _count_and_oldest_age(self, connection, model, done_column):
        """Rows whose ``done_column`` is NULL, and the age of the oldest (partial indexes serve both).

        In a savepoint: a read that fails (a locked table's timeout) leaves the next one a usable
        transaction.
        """
        oldest_age = func.extract("epoch", func.now() - func.min(model.created_at))
        query = select(func.count(), func.coalesce(oldest_age, 0)).where(done_column.is_(None))
        with connection.begin_nested():
            count, age = connection.execute(query).one()
        return count, float(age)

    def _rq_jobs(self):
        from .jobs import orders_queue  # here: jobs imports this module's counters

        queue = orders_queue(queue_redis.client)
        registries = {
            "started": queue.started_job_registry,
            "scheduled": queue.scheduled_job_registry,
            "failed": queue.failed_job_registry,
        }
        counts = {"queued": queue.count}
        # Read only: counting without RQ's cleanup, which would move jobs between registries.
        counts.update({state: r.get_job_count(cleanup=False) for state, r in registries.items()})
        family = GaugeMetricFamily(
            "orders_rq_jobs", "Jobs in RQ's queue and registries.", labels=["queue", "state"]
        )
        for state in RQ_STATES:
            family.add_metric([queue.name, state], counts[state])
        return [family]


def scrape_registry():
    """What the web's ``/metrics`` serves: every gunicorn worker's metrics (or this process's), and
    the state gauges."""
    registry = CollectorRegistry()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(StateCollector())
    return registry


blp = Blueprint("metrics", __name__)


@blp.get("/metrics")
def metrics():
    """Prometheus text format (not part of the API, so not in its OpenAPI document)."""
    return Response(
        generate_latest(current_app.extensions["metrics_registry"]), content_type=CONTENT_TYPE_LATEST
    )


def init_app(app):
    app.extensions["metrics_registry"] = scrape_registry()
    app.register_blueprint(blp)


def serve_process_metrics(config):
    """Serve this process's metrics on ``METRICS_PORT`` (all interfaces) in a thread; 0 turns it off."""
    port = int(config["METRICS_PORT"])
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as error:  # e.g. a second worker on the same port: it still works, unmeasured
        log.error("Cannot serve metrics on port %d (%s); running without them", port, error)
        return
    log.info("Metrics on port %d", port)
