"""The reconciler: gives an order its job again when a fault lost it.

PostgreSQL is the source of truth; Redis (RQ's queues and registries) is not. A Redis restart
without persistence loses queued jobs, a worker killed mid-job leaves its job "started" forever,
and a job that exhausted its retries sits in the failed registry. ``reconcile`` gives each
order still unprocessed ``RECONCILE_AFTER_SECONDS`` after it was created whose job is not queued,
scheduled or running its job again, under the same unique id. A worker killed with SIGKILL takes
its scheduler along: a retry scheduled so long ago counts as lost too.

``flask relay`` runs ``reconcile_round`` between its batches every ``RECONCILE_INTERVAL_SECONDS``;
``flask reconcile`` runs ``reconcile`` once. Several relays may run it at once: a
transaction-scoped PostgreSQL advisory lock lets one of them reconcile at a time and the others
skip that round.
"""

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import redis
from flask import current_app
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, select, tuple_

from .adapters.rq import delete_job
from .extensions import db, queue_redis
from .job_queue import enqueue_process_order, job_id, orders_queue
from .log import log_context
from .metrics import RECONCILED
from .models import Order

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock's key: any constant the service uses for nothing else.
ADVISORY_LOCK_KEY = 0x0DE5_5EC0
# A job in one of these states will run (again) without help.
PENDING_STATES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}
BATCH_SIZE = 500


def reconcile() -> int | None:
    """Repair every overdue unprocessed order's job; return how many were repaired, or ``None``
    when another process holds the reconciler's lock. Needs an app context.

    Raises ``redis.RedisError`` or ``sqlalchemy.exc.SQLAlchemyError`` when a dependency is down.
    """
    queue = orders_queue(current_app.config, queue_redis.client)
    try:
        if not db.session.scalar(select(func.pg_try_advisory_xact_lock(ADVISORY_LOCK_KEY))):
            return None
        # RQ's own maintenance first: a started job whose worker died goes back to the queue
        # (a retry) or, without retries left, to the failed registry, where it is repaired below.
        queue.started_job_registry.cleanup()
        return sum(
            _repair(queue, order_id, job)
            for page in _overdue_order_pages()
            for order_id, job in zip(page, _jobs_of(queue, page), strict=True)
        )
    finally:
        db.session.rollback()  # reads only; ends the transaction and releases the lock


def reconcile_round() -> None:
    """``reconcile`` as a periodic task: Redis being down skips the round (logged), and the loop
    that runs it goes on with its own work. Needs an app context."""
    try:
        reconcile()
    except redis.RedisError as error:
        log.warning("Reconciler skipped a round, Redis is unavailable: %s", error)


def _overdue_order_pages() -> Iterator[list[uuid.UUID]]:
    """Ids of orders unprocessed for ``RECONCILE_AFTER_SECONDS``, oldest first, a list of up to
    ``BATCH_SIZE`` at a time (keyset pagination on the ``ix_orders_unprocessed`` partial index)."""
    grace = timedelta(seconds=current_app.config["RECONCILE_AFTER_SECONDS"])
    overdue = Order.processed_at.is_(None) & (Order.created_at < func.now() - grace)
    last = None
    while True:
        query = select(Order.created_at, Order.id).where(overdue)
        if last is not None:
            query = query.where(tuple_(Order.created_at, Order.id) > last)
        rows = db.session.execute(query.order_by(Order.created_at, Order.id).limit(BATCH_SIZE)).all()
        yield [order_id for _, order_id in rows]
        if len(rows) < BATCH_SIZE:
            return
        last = tuple(rows[-1])


def _jobs_of(queue: Queue, order_ids: list[uuid.UUID]) -> list[Job | None]:
    """Each order's job, or ``None`` where it has none, read in one Redis round trip (a pipeline)."""
    ids = [job_id(order_id) for order_id in order_ids]
    return queue.job_class.fetch_many(ids, connection=queue.connection, serializer=queue.serializer)


def _repair(queue: Queue, order_id: uuid.UUID, job: Job | None) -> int:
    """Give the order its job again unless ``job`` (as read) will run anyway; return 1 if repaired."""
    state = job.get_status(refresh=False) if job is not None else None
    if (
        job is not None
        and state in PENDING_STATES
        and not (state == JobStatus.SCHEDULED and _retry_stalled(queue, job))
    ):
        return 0
    with log_context(order_id=str(order_id)):
        if job is not None:
            delete_job(job)  # finished, failed, stopped or canceled: a fresh run with fresh retries
        try:
            enqueue_process_order(current_app.config, queue.connection, order_id, request_id=None)
        except DuplicateJobError:  # the consumer enqueued it meanwhile
            return 0
        log.warning(
            "Reconciled order %s: unprocessed and its job was %s; enqueued it again",
            order_id,
            state.value if state else "missing",
        )
    RECONCILED.inc()
    return 1


def _retry_stalled(queue: Queue, job: Job) -> bool:
    """A retry due ``RECONCILE_AFTER_SECONDS`` ago that is still scheduled: no scheduler is moving
    it (it died with its worker, and RQ lets a new worker take the scheduler over only minutes
    later)."""
    grace = timedelta(seconds=current_app.config["RECONCILE_AFTER_SECONDS"])
    try:
        due: datetime = queue.scheduled_job_registry.get_scheduled_time(job)
    except NoSuchJobError:  # a scheduler has just moved it to the queue
        return False
    return due < datetime.now(UTC) - grace
