"""The web's ``GET /metrics``: every gunicorn worker's metrics (``metrics``), and gauges of the
shared state (outbox, unprocessed orders, RQ registries).

The gauges are read from PostgreSQL and Redis when the web is scraped, each read bounded by
``METRICS_READ_TIMEOUT``; a read that fails leaves its gauges out of that scrape.
"""

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import InstrumentedAttribute

from .database import bounded_connection
from .extensions import db, queue_redis
from .job_queue import orders_queue
from .models import Order, OutboxEvent

log = logging.getLogger(__name__)

RQ_STATES = ("queued", "started", "scheduled", "failed")


class StateCollector:
    """Gauges of the shared state, read from PostgreSQL and Redis at each scrape (in a request)."""

    def collect(self) -> Iterator[Metric]:
        yield from self._read(self._database)
        yield from self._read(self._rq_jobs)

    @staticmethod
    def _read(read: Callable[..., Iterable[Metric]], *args: Any) -> Iterable[Metric]:
        """The metric families ``read(*args)`` returns, or none when it fails (logged)."""
        try:
            return read(*args)
        except Exception as error:  # whatever failed, it drops these gauges, never the scrape
            log.warning("Metrics: cannot read %s: %r", read.__name__.strip("_"), error)
            return []

    def _database(self) -> list[Metric]:
        """The PostgreSQL gauges, read on one connection."""
        with bounded_connection(db.engine, current_app.config["METRICS_READ_TIMEOUT"]) as connection:
            return [*self._read(self._outbox, connection), *self._read(self._unprocessed_orders, connection)]

    def _outbox(self, connection: Connection) -> list[Metric]:
        pending, age = self._count_and_oldest_age(connection, OutboxEvent, OutboxEvent.published_at)
        return [
            GaugeMetricFamily("orders_outbox_pending", "Outbox events not yet published.", pending),
            GaugeMetricFamily(
                "orders_outbox_oldest_pending_age_seconds",
                "Age of the oldest unpublished outbox event (0 when none).",
                age,
            ),
        ]

    def _unprocessed_orders(self, connection: Connection) -> list[Metric]:
        unprocessed, age = self._count_and_oldest_age(connection, Order, Order.processed_at)
        return [
            GaugeMetricFamily("orders_unprocessed", "Orders without processed_at.", unprocessed),
            GaugeMetricFamily(
                "orders_unprocessed_oldest_age_seconds",
                "Age of the oldest order without processed_at (0 when none).",
                age,
            ),
        ]

    def _count_and_oldest_age(
        self,
        connection: Connection,
        model: type[Order | OutboxEvent],
        done_column: InstrumentedAttribute[datetime | None],
    ) -> tuple[int, float]:
        """Rows whose ``done_column`` is NULL, and the age of the oldest (partial indexes serve both).

        In a savepoint: a read that fails (a locked table's timeout) leaves the next one a usable
        transaction.
        """
        oldest_age = func.extract("epoch", func.now() - func.min(model.created_at))
        query = select(func.count(), func.coalesce(oldest_age, 0)).where(done_column.is_(None))
        with connection.begin_nested():
            count, age = connection.execute(query).one()
        return count, float(age)

    def _rq_jobs(self) -> list[Metric]:
        queue = orders_queue(current_app.config, queue_redis.client)
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


def scrape_registry() -> CollectorRegistry:
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
def metrics() -> Response:
    """Prometheus text format (not part of the API, so not in its OpenAPI document)."""
    return Response(
        generate_latest(current_app.extensions["metrics_registry"]), content_type=CONTENT_TYPE_LATEST
    )


def init_app(app: Flask) -> None:
    app.extensions["metrics_registry"] = scrape_registry()
    app.register_blueprint(blp)
