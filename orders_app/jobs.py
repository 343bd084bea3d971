"""The ``process_order`` job on RQ: its queue, its unique id, its enqueueing and what it does.

The worker that runs it is ``orders_app.worker``.
"""

import logging
import time

from flask import current_app
from rq import Queue, Retry, get_current_job
from rq.serializers import JSONSerializer  # never pickle: whoever writes to Redis would run code

from .extensions import db
from .log import log_context
from .metrics import ORDERS_PROCESSED
from .orders.service import mark_processed

log = logging.getLogger(__name__)


def job_id(order_id):
    """RQ job ids allow letters, digits, ``_`` and ``-`` only; a UUID's hex form fits."""
    return f"process-order-{order_id}"


def orders_queue(connection):
    """The RQ queue of ``process_order`` jobs; its registries and jobs share its JSON serializer."""
    return Queue(current_app.config["RQ_QUEUE"], connection=connection, serializer=JSONSerializer)


def enqueue_process_order(connection, order_id, request_id):
    """Enqueue the order's job once: raises ``rq.exceptions.DuplicateJobError`` if it exists."""
    config = current_app.config
    return orders_queue(connection).enqueue(
        process_order,
        str(order_id),
        job_id=job_id(order_id),
        unique=True,
        job_timeout=config["JOB_TIMEOUT_SECONDS"],
        retry=Retry(max=3, interval=config["JOB_RETRY_INTERVALS"]),
        meta={"request_id": request_id},
    )


def process_order(order_id):
    """Process an order: takes ``PROCESSING_DELAY_SECONDS``, then sets ``processed_at`` once.

    The database session is removed after every run, whatever its outcome: a connection lost
    mid-transaction must not leave the next job a session that only raises ``PendingRollbackError``.
    """
    job = get_current_job()
    with log_context(job.meta.get("request_id") if job else None, order_id):
        try:
            log.info("Processing order %s", order_id)
            time.sleep(current_app.config["PROCESSING_DELAY_SECONDS"])
            order, processed_now = mark_processed(order_id)
        finally:
            db.session.remove()
        if processed_now:
            ORDERS_PROCESSED.inc()
            print(f"Order {order_id} processed", flush=True)
        else:
            log.info("Order %s was already processed at %s: nothing to do", order_id, order.processed_at)
