"""Prometheus metrics: every metric of the service, and how each process serves them.

The web serves ``GET /metrics`` (``metrics_routes``). Under gunicorn its workers write their
counters to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by gunicorn.conf.py before this module is
imported) and a scrape adds them up, so the numbers do not depend on which worker answers. The
relay, consumer and worker are single processes: they serve their own counters on
``METRICS_PORT`` (``serve_process_metrics``).

Imports neither the app nor the database: the consumer has neither.
"""

import logging
from collections.abc import Mapping
from typing import Any

from flask import Request
from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

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
JOBS_REFUSED = Counter(
    "orders_jobs_refused_total", "Jobs the worker failed without running: not process_order alone."
)
ORDERS_PROCESSED = Counter("orders_processed_total", "Orders whose processed_at this process set.")
RECONCILED = Counter("orders_reconciled_total", "process_order jobs given again by the reconciler.")

# Label values stay few: unknown methods and paths that match no route share one value each.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
UNMATCHED_ROUTE = "unmatched"
# (method, route, status) -> that request's counter and histogram: finding them with labels() on
# every request costs more than updating them (docs/performance.md).
_request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(request: Request, status: int, seconds: float) -> None:
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


def serve_process_metrics(config: Mapping[str, Any]) -> None:
    """Serve this process's metrics on ``METRICS_ADDRESS``, port ``METRICS_PORT`` (0: off), in a thread."""
    address, port = config["METRICS_ADDRESS"], int(config["METRICS_PORT"])
    if not port:
        return
    try:
        start_http_server(port, addr=address)
    except OSError as error:  # e.g. a second worker on the same port: it still works, unmeasured
        log.error("Cannot serve metrics on %s:%d (%s); running without them", address, port, error)
        return
    log.info("Metrics on %s:%d", address, port)
