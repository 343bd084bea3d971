"""The transactional outbox: events written in the same transaction as the change they announce.

A ``NOTIFY`` in that transaction wakes the relay when it commits (PostgreSQL delivers
notifications on commit only); the relay's timer sweep covers any notification it missed.
Each event keeps the trace context of the request that wrote it: the relay's publish continues
that trace (``orders_app.tracing``).
"""

from sqlalchemy import bindparam, func, insert, select

from .. import tracing
from ..extensions import db
from ..models import OutboxEvent
from .messages import AnnouncedOrder, new_order_event
from .topology import NEW_ORDER

NOTIFY_CHANNEL = "outbox"

# An event and the NOTIFY that wakes the relay when it commits: one statement, one round trip.
# Built once (docs/architecture.md, "Conventions"), executed with each event's values.
_INSERT_EVENT_AND_NOTIFY = select(func.pg_notify(NOTIFY_CHANNEL, "")).add_cte(
    insert(OutboxEvent.__table__)
    .values(
        id=bindparam("id"),
        event_type=NEW_ORDER,
        payload=bindparam("payload"),
        trace_context=bindparam("trace_context"),
    )
    .cte("event")
)


def add_new_order_event(order: AnnouncedOrder, request_id: str | None) -> None:
    """Write the ``new_order`` event of ``order`` in the current transaction."""
    body = new_order_event(order, request_id)
    db.session.execute(
        _INSERT_EVENT_AND_NOTIFY,
        {"id": body["event_id"], "payload": body, "trace_context": tracing.carrier()},
    )
