"""The relay: moves committed outbox events to RabbitMQ.

Wakes on PostgreSQL ``NOTIFY`` (events leave within milliseconds) and sweeps on a timer too (a
missed notification never loses an event). A notification starts a batch at once, unless the last
batch started less than ``RELAY_GATHER_SECONDS`` ago: then the relay waits out the rest of that
interval, and the events committed meanwhile go in one batch (one wakeup, claim, mark and commit
for them all instead of one each, when orders come faster than that). Each batch is claimed with
``FOR UPDATE SKIP LOCKED``, so several relays share the work without doing any twice, and an event
is marked published only after the broker confirmed it. Delivery is at least once: a crash between
the confirm and the commit publishes that event again, and the consumer side is idempotent.

Between batches the loop runs the periodic tasks it is handed (``lifecycle.PeriodicTask``), and
knows nothing else of them: ``flask relay`` (``orders_app.cli``) hands it the reconciler and
housekeeping.

Traced (``orders_app.tracing``), a batch is a span of its own, linked to the trace of each event
in it, and each publish continues the trace of the request that wrote its event, linked to its
batch; the message's headers carry the publish's trace context on (its body does not change).
"""

import json
import logging
import time
import uuid
from collections.abc import Iterable
from contextlib import closing
from typing import Any

import pika
import psycopg2
from flask import current_app
from opentelemetry.trace import SpanKind
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError
from psycopg2 import sql
from psycopg2.extensions import connection as PostgresConnection
from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from .. import tracing
from ..database import libpq_url
from ..extensions import db
from ..lifecycle import Backoff, GracefulStop, Heartbeat, PeriodicTask, keep_serving
from ..log import log_context
from ..metrics import EVENTS_PUBLISHED
from ..models import OutboxEvent
from .outbox import NOTIFY_CHANNEL
from .topology import Topology, connect

log = logging.getLogger(__name__)

# Built once (docs/architecture.md, "Conventions"), as table statements (the ORM's select and bulk
# update machinery cost more than the rest of a one-event batch): a batch of pending events (plain
# rows, oldest first, locked), and one UPDATE marking those the broker confirmed.
_OUTBOX = OutboxEvent.__table__
_CLAIM_PENDING = (
    select(_OUTBOX.c.id, _OUTBOX.c.event_type, _OUTBOX.c.payload, _OUTBOX.c.trace_context)
    .where(_OUTBOX.c.published_at.is_(None))
    .order_by(_OUTBOX.c.created_at)
    .limit(bindparam("batch_size"))
    .with_for_update(skip_locked=True)
)
# One of its rows: id, event_type, payload (the event body) and trace_context (a carrier).
PendingEvent = Row[uuid.UUID, str, dict[str, Any], dict[str, str] | None]
_MARK_PUBLISHED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=func.clock_timestamp())
)


class Relay:
    """Publishes the outbox; between batches, runs each of ``periodic`` (``PeriodicTask``) when due."""

    def __init__(self, stop: GracefulStop | None = None, periodic: Iterable[PeriodicTask] = ()) -> None:
        config = current_app.config
        self.config = config
        self.topology = Topology.from_config(config)
        self.batch_size = config["RELAY_BATCH_SIZE"]
        self.sweep_seconds = config["RELAY_SWEEP_SECONDS"]
        self.gather_seconds = config["RELAY_GATHER_SECONDS"]
        self.stop = stop or GracefulStop()
        self.backoff = Backoff(maximum=config["RECONNECT_MAX_SECONDS"])
        self.heartbeat = Heartbeat(config["HEARTBEAT_FILE"])
        self.periodic = list(periodic)

    def run(self) -> None:
        """Publish until stopped; ride out outages of PostgreSQL and RabbitMQ. Needs an app context."""
        failures = (SQLAlchemyError, psycopg2.Error, AMQPError, OSError)
        keep_serving("Relay", self._serve, self.stop, self.backoff, failures, self.heartbeat)

    def _serve(self) -> None:
        try:
            self._publish_until_stopped()
        finally:
            db.session.remove()  # after a failure: roll back, return the connection

    def _publish_until_stopped(self) -> None:
        with closing(self._listen()) as listener, closing(connect(self.config)) as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            self.topology.declare(channel)
            self.backoff.reset()
            log.info(
                "Relay publishing to exchange %s; between batches: %s",
                self.topology.exchange,
                ", ".join(map(str, self.periodic)) or "nothing else",
            )
            while not self.stop.requested:
                self.heartbeat.beat()
                started = time.monotonic()
                while self.publish_batch(channel) == self.batch_size and not self.stop.requested:
                    pass
                for task in self.periodic:
                    task.run_if_due()
                if self.stop.wait(self.sweep_seconds, listener):
                    self._gather(started)
                    listener.poll()
                    listener.notifies.clear()
                connection.process_data_events()  # answer the broker's heartbeats

    def _gather(self, last_batch_started: float) -> None:
        """Wait until ``RELAY_GATHER_SECONDS`` after the last batch started (or a stop)."""
        remaining = last_batch_started + self.gather_seconds - time.monotonic()
        if remaining > 0:
            self.stop.wait(remaining)

    def _listen(self) -> PostgresConnection:
        """A dedicated autocommit PostgreSQL session that receives the outbox notifications."""
        listener = psycopg2.connect(libpq_url(db.engine.url), connect_timeout=5)
        listener.autocommit = True
        listener.cursor().execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
        return listener

    def publish_batch(self, channel: BlockingChannel) -> int:
        """Publish up to one batch of pending events; return how many were claimed."""
        events = db.session.execute(_CLAIM_PENDING, {"batch_size": self.batch_size}).all()
        if not events:  # an idle sweep: no span
            db.session.commit()
            return 0
        links = [event.trace_context for event in events]
        with tracing.span(
            "relay batch", links=links, attributes={"messaging.batch.message_count": len(events)}
        ):
            confirmed = []
            try:
                for event in events:
                    self._publish(channel, event)
                    EVENTS_PUBLISHED.inc()
                    confirmed.append(event.id)
            finally:
                if confirmed:  # what the broker confirmed is marked; the rest is unlocked
                    db.session.execute(_MARK_PUBLISHED, {"ids": confirmed})
                db.session.commit()
        return len(events)

    def _publish(self, channel: BlockingChannel, event: PendingEvent) -> None:
        """Publish one event and wait for the broker's confirm (raises if nacked or unroutable)."""
        order_id = event.payload.get("order_id")
        with (
            log_context(event.payload.get("request_id"), order_id),
            tracing.span(
                f"publish {event.event_type}",
                SpanKind.PRODUCER,
                parent=event.trace_context,
                links=[tracing.carrier()],  # the batch
                attributes={"messaging.message.id": str(event.id), "orders.order_id": str(order_id)},
            ),
        ):
            channel.basic_publish(
                exchange=self.topology.exchange,
                routing_key=event.event_type,
                body=json.dumps(event.payload).encode(),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Persistent,
                    type=event.event_type,
                    message_id=str(event.id),
                    headers=tracing.carrier(),  # this span's trace context, for the consumer
                ),
                mandatory=True,
            )
            log.info(
                "Published %s event %s for order %s", event.event_type, event.id, event.payload["order_id"]
            )
