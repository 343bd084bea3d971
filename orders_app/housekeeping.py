"""Housekeeping: deletes the rows the service no longer needs, so that no table grows without bound.

- Outbox events published more than ``OUTBOX_RETENTION_HOURS`` ago (default 72). Until then they
  tell when an order's event left and under which id, for a weekend's worth of looking back.
- Idempotency keys an hour past their 24-hour window. The hour keeps a request that has just
  found its key alive from finding it gone when it reads it again to replay it.

``flask relay`` runs ``purge_round`` between its batches every ``HOUSEKEEPING_INTERVAL_SECONDS``,
as it runs the reconciler; ``flask purge`` calls ``purge`` by hand. Rows go in batches of
``BATCH_SIZE``, each batch a transaction of its own claimed with ``FOR UPDATE SKIP LOCKED``: a
backlog never holds many locks or a long transaction, and several relays purging at once share
the rows instead of waiting on one another (the time a batch and a round take:
docs/performance.md, "Housekeeping").
"""

import logging
from datetime import timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import ColumnElement, CursorResult, delete, func, select, tuple_

from .extensions import db
from .models import IDEMPOTENCY_WINDOW, IdempotencyKey, OutboxEvent

log = logging.getLogger(__name__)

BATCH_SIZE = 1000  # rows: a short transaction, few locks
# A round purges at most this many batches of each table, then hands the process back to its own
# work (the relay publishing): 50,000 rows a round (a minute by default), well above the rate
# orders can be created at.
ROUND_BATCHES = 50
KEY_RETENTION = IDEMPOTENCY_WINDOW + timedelta(hours=1)


def purge(max_batches: int | None = None) -> dict[str, int]:
    """Delete what has expired, at most ``max_batches`` batches of each table (all of it when
    ``None``); return how many rows went, per table. Needs an app context."""
    outbox_retention = timedelta(hours=current_app.config["OUTBOX_RETENTION_HOURS"])
    deleted = {
        "outbox_events": _delete_in_batches(
            OutboxEvent,
            OutboxEvent.published_at < func.now() - outbox_retention,
            max_batches,
        ),
        "idempotency_keys": _delete_in_batches(
            IdempotencyKey,
            IdempotencyKey.created_at < func.now() - KEY_RETENTION,
            max_batches,
        ),
    }
    if any(deleted.values()):
        log.info(
            "Purged %d published outbox events and %d expired idempotency keys",
            deleted["outbox_events"],
            deleted["idempotency_keys"],
        )
    return deleted


def purge_round() -> None:
    """``purge`` as a periodic task: at most ``ROUND_BATCHES`` batches of each table; a backlog
    goes over the next rounds. Needs an app context."""
    purge(max_batches=ROUND_BATCHES)


def _delete_in_batches(
    model: type[OutboxEvent | IdempotencyKey], expired: ColumnElement[bool], max_batches: int | None
) -> int:
    key = model.__table__.primary_key.columns
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        batch = select(*key).where(expired).limit(BATCH_SIZE).with_for_update(skip_locked=True)
        statement = delete(model).where(tuple_(*key).in_(batch)).execution_options(synchronize_session=False)
        count = cast(CursorResult[Any], db.session.execute(statement)).rowcount  # a DELETE's result
        db.session.commit()
        deleted, batches = deleted + count, batches + 1
        if count < BATCH_SIZE:
            break
    return deleted
