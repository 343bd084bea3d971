"""The RQ worker that runs ``process_order`` (``flask worker``), and nothing else; its restart loop."""

import logging
from collections.abc import Mapping
from typing import Any

import redis
from flask import current_app
from rq import Queue
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer

from .adapters.rq import OrdersJob, Worker
from .job_queue import PROCESS_ORDER
from .lifecycle import Backoff, GracefulStop
from .metrics import JOBS_REFUSED

log = logging.getLogger(__name__)


class OrdersWorker(Worker):
    """The RQ worker of ``flask worker``: runs ``process_order`` jobs, in the app context of the
    command, and fails any other job without running it."""

    log_result_lifespan = False  # RQ's "result is kept for 500 seconds" line after every job: no news

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """Run ``job`` if it is ``process_order`` and nothing more; fail any other without running it.

        A job names its callable, and callbacks run on its outcome: whoever can write to Redis
        could otherwise run any importable function (``subprocess.check_output``) in a process
        holding ``DATABASE_URL`` and ``JWT_SECRET_KEY``.
        """
        reason = refusal(job)
        if reason is None:
            return super().perform_job(job, queue, execution)
        JOBS_REFUSED.inc()
        log.error("Refused job %s from queue %s: %s; failed without running it", job.id, queue.name, reason)
        self.fail_without_running(job, queue, execution, reason)
        return False


def refusal(job: Job) -> str | None:
    """Why the worker must not run ``job`` (a job ``job_queue`` never enqueues), or None."""
    try:
        name = job.func_name
    except DeserializationError:
        return "its data cannot be read"
    if name != PROCESS_ORDER:
        return f"it names {name!r}, not {PROCESS_ORDER}"
    fields = job.to_dict(include_meta=False, include_result=False)
    if any(fields[f"{outcome}_callback_name"] for outcome in ("success", "failure", "stopped")):
        return "it names callbacks"
    if job.webhooks:
        return "it names webhooks"
    return None


def make_worker(config: Mapping[str, Any], connection: redis.Redis) -> OrdersWorker:
    """The worker of queue ``RQ_QUEUE``, on ``connection`` (bytes, never decoded: RQ's need)."""
    return OrdersWorker(
        [config["RQ_QUEUE"]],
        connection=connection,
        serializer=JSONSerializer,
        job_class=OrdersJob,
        abandoned_grace_seconds=config["JOB_ABANDONED_GRACE_SECONDS"],
    )


def run_worker() -> None:
    """Run an RQ worker (with the scheduler, for retries) until SIGTERM/SIGINT; outlive Redis outages."""
    config = current_app.config
    stop, backoff = GracefulStop(), Backoff(maximum=config["RECONNECT_MAX_SECONDS"])
    while not stop.requested:
        worker = None
        try:
            # No socket timeout: the worker blocks on BLPOP for minutes at a time. RQ already
            # asks Redis for this client's address when the worker is made.
            worker = make_worker(config, redis.Redis.from_url(config["REDIS_URL"]))
            worker.work(with_scheduler=True)
        except redis.RedisError as error:
            log.warning("Worker lost Redis: %r", error)
        if worker is not None and worker.stop_signalled:
            break
        stop.install()  # between two workers, a signal stops the loop
        delay = backoff.next_delay()
        log.warning("Worker stopped unexpectedly; starting a new one in %.1f s", delay)
        stop.wait(delay)
    log.info("Worker stopped")
