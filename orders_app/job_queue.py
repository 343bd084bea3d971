"""The RQ queue of ``process_order`` jobs, and enqueueing one: the one definition the consumer,
the reconciler and the tests share.

Imports neither the app nor the database: the consumer has neither. The job is enqueued by its
dotted path, so whoever enqueues never imports its code (``orders_app.jobs``). The job's meta
keeps the trace context of its enqueue, which the worker continues (``orders_app.tracing``).
One job at a time here; the consumer enqueues the jobs of its messages together
(``orders_app.adapters.rq.enqueue_unique``), each made by ``process_order_job``.
"""

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis
from opentelemetry.trace import SpanKind
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer  # never pickle: whoever writes to Redis would run code

from . import tracing
from .adapters.rq import OrdersJob

PROCESS_ORDER = "orders_app.jobs.process_order"


def job_id(order_id: uuid.UUID | str) -> str:
    """RQ job ids allow letters, digits, ``_`` and ``-`` only; a UUID's hex form fits."""
    return f"process-order-{order_id}"


def orders_queue(config: Mapping[str, Any], connection: redis.Redis) -> Queue:
    """The queue ``RQ_QUEUE``; its registries and jobs share its JSON serializer and job class."""
    return Queue(config["RQ_QUEUE"], connection=connection, serializer=JSONSerializer, job_class=OrdersJob)


def process_order_job(
    config: Mapping[str, Any], queue: Queue, order_id: uuid.UUID | str, request_id: str | None
) -> Job:
    """The order's job, made but not yet in Redis; its meta keeps the trace context in hand."""
    return queue.create_job(
        PROCESS_ORDER,
        args=(str(order_id),),
        job_id=job_id(order_id),
        timeout=config["JOB_TIMEOUT_SECONDS"],
        retry=Retry(max=3, interval=config["JOB_RETRY_INTERVALS"]),
        meta={"request_id": request_id, "trace_context": tracing.carrier()},
    )


@contextmanager
def enqueue_span(order_id: uuid.UUID | str) -> Iterator[None]:
    """The span of an order's enqueue: the job made within it is its child (``process_order_job``)."""
    attributes = {"messaging.message.id": job_id(order_id), "orders.order_id": str(order_id)}
    with tracing.span("enqueue process_order", SpanKind.PRODUCER, attributes=attributes):
        yield


def enqueue_process_order(
    config: Mapping[str, Any], connection: redis.Redis, order_id: uuid.UUID | str, request_id: str | None
) -> Job:
    """Enqueue the order's job once: raises ``rq.exceptions.DuplicateJobError`` if it exists."""
    with enqueue_span(order_id):
        queue = orders_queue(config, connection)
        return queue.enqueue_job(process_order_job(config, queue, order_id, request_id), unique=True)
