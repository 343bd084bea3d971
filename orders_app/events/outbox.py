"""The transactional outbox: events written in the same transaction as the change they announce.

A ``NOTIFY`` in that transaction wakes the relay when it commits (PostgreSQL delivers
notifications on commit only); the relay's timer sweep covers any notification it missed.
"""

from sqlalchemy import func, insert, select

from ..extensions import db
from ..models import OutboxEvent
from .messages import new_order_event
from .topology import NEW_ORDER

NOTIFY_CHANNEL = "outbox"


def add_new_order_event(order, request_id):
    """Write the ``new_order`` event of ``order`` in the current transaction, and the NOTIFY that
    wakes the relay when it commits: one statement, one round trip."""
    body = new_order_event(order, request_id)
    event = insert(OutboxEvent).values(id=body["event_id"], event_type=NEW_ORDER, payload=body)
    db.session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")).add_cte(event.cte("event")))
