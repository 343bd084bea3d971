"""The ``process_order`` job: what it does.

Its queue, unique id and enqueueing are ``orders_app.job_queue``; the worker that runs it is
``orders_app.worker``. Traced, a run continues the trace its job's meta carries (``orders_app.tracing``).
"""

import logging
import time

from flask import current_app
from opentelemetry.trace import SpanKind
from rq import get_current_job

from . import tracing
from .extensions import db
from .job_queue import job_id
from .log import log_context
from .metrics import ORDERS_PROCESSED
from .orders.service import mark_processed

log = logging.getLogger(__name__)


def process_order(order_id: str) -> None:
    """Process an order: takes ``PROCESSING_DELAY_SECONDS``, then sets ``processed_at`` once.

    The database session is removed after every run, whatever its outcome: a connection lost
    mid-transaction must not leave the next job a session that only raises ``PendingRollbackError``.
    """
    job = get_current_job()
    meta = job.meta if job else {}
    attributes = {"messaging.message.id": job_id(order_id), "orders.order_id": order_id}
    with (
        tracing.span(
            "run process_order", SpanKind.CONSUMER, meta.get("trace_context"), attributes=attributes
        ),
        log_context(meta.get("request_id"), order_id),
    ):
        try:
            log.info("Processing order %s", order_id)
            time.sleep(current_app.config["PROCESSING_DELAY_SECONDS"])
            order, processed_now = mark_processed(order_id)
        finally:
            db.session.remove()
        if processed_now:
            ORDERS_PROCESSED.inc()
            # The line the service promises on the worker's output, once per order (decision 0017).
            print(f"Order {order_id} processed", flush=True)  # noqa: T201
        else:
            log.info("Order %s was already processed at %s: nothing to do", order_id, order["processed_at"])
