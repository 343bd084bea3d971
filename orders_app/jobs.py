"""Background processing on RQ: the ``process_order`` job, its enqueueing and the worker."""

import logging
import time

import redis
from flask import current_app
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.serializers import JSONSerializer  # never pickle: whoever writes to Redis would run code

from .extensions import db
from .lifecycle import Backoff, GracefulStop
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


class OrdersWorker(SimpleWorker):
    """An RQ worker running jobs in its own process, in the app context of ``flask worker``.

    No fork per job: forking, then connecting to PostgreSQL afresh, cost ~40 ms of a ~45 ms job
    (bench/). The worker's database pool stays warm instead; SIGTERM still lets the job in hand
    finish (RQ's warm shutdown), and job timeouts still apply (a signal in this process).
    """

    stop_signalled = False

    def request_stop(self, signum, frame):
        self.stop_signalled = True
        super().request_stop(signum, frame)

    def get_heartbeat_ttl(self, job, working_time=0.0):
        """How long a started job stays "running" in RQ's started registry without a heartbeat.

        A job run in this process cannot outlive its timeout (RQ stops it with SIGALRM), so a job
        still started shortly after that belongs to a worker that died (SIGKILL, a lost host): RQ's
        registry maintenance (``StartedJobRegistry.cleanup``, which the reconciler runs) then retries
        it. RQ's own margin for this, a minute, suits forked work horses that heartbeat while working.
        """
        return int(job.timeout) + current_app.config["JOB_ABANDONED_GRACE_SECONDS"]


def run_worker():
    """Run an RQ worker (with the scheduler, for retries) until SIGTERM/SIGINT; outlive Redis outages."""
    config = current_app.config
    stop, backoff = GracefulStop(), Backoff(maximum=config["RECONNECT_MAX_SECONDS"])
    while not stop.requested:
        # No socket timeout: the worker blocks on BLPOP for minutes at a time.
        worker = OrdersWorker(
            [config["RQ_QUEUE"]],
            connection=redis.Redis.from_url(config["REDIS_URL"]),
            serializer=JSONSerializer,
        )
        try:
            worker.work(with_scheduler=True)
        except redis.RedisError as error:
            log.warning("Worker lost Redis: %r", error)
        if worker.stop_signalled:
            break
        stop.install()  # between two workers, a signal stops the loop
        delay = backoff.next_delay()
        log.warning("Worker stopped unexpectedly; starting a new one in %.1f s", delay)
        stop.wait(delay)
    log.info("Worker stopped")
