"""The RQ worker that runs ``process_order`` (``flask worker``), and nothing else; its restart loop."""

import logging
import time

import redis
from flask import current_app
from rq import SimpleWorker
from rq.exceptions import DeserializationError
from rq.intermediate_queue import IntermediateQueue
from rq.serializers import JSONSerializer

from .job_queue import PROCESS_ORDER, OrdersJob
from .lifecycle import Backoff, GracefulStop
from .metrics import JOBS_REFUSED

log = logging.getLogger(__name__)


class OrdersWorker(SimpleWorker):
    """An RQ worker running jobs in its own process, in the app context of ``flask worker``.

    No fork per job: forking, then connecting to PostgreSQL afresh, cost ~40 ms of a ~45 ms job
    (bench/). The worker's database pool stays warm instead; SIGTERM still lets the job in hand
    finish (RQ's warm shutdown), and job timeouts still apply (a signal in this process).
    """

    stop_signalled = False
    # The TTL the last heartbeat asked for (None: RQ's default), and when it was sent.
    _heartbeat_sent = (None, float("-inf"))

    def perform_job(self, job, queue, execution):
        """Run ``job`` if it is ``process_order`` and nothing more; fail any other without running it.

        A job names its callable, and callbacks run on its outcome: whoever can write to Redis
        could otherwise run any importable function (``subprocess.check_output``) in a process
        holding ``DATABASE_URL`` and ``JWT_SECRET_KEY``. A refused job is failed for good: no
        retry, no webhook, no callback of its own.
        """
        reason = refusal(job)
        if reason is None:
            return super().perform_job(job, queue, execution)
        JOBS_REFUSED.inc()
        log.error("Refused job %s from queue %s: %s; failed without running it", job.id, queue.name, reason)
        job.retries_left, job.webhooks = None, []
        # RQ's preparation of a job (skipped: it reads the function's name, unreadable in a pickled
        # job) takes it out of the queue's intermediate list, where RQ's cleanup would fail it again.
        IntermediateQueue(queue.key, connection=self.connection).remove(job.id)
        self.handle_job_failure(
            job,
            queue,
            started_job_registry=queue.started_job_registry,
            exc_string=f"Refused: {reason}",
            execution=execution,
        )
        return False

    def request_stop(self, signum, frame):
        self.stop_signalled = True
        super().request_stop(signum, frame)

    def heartbeat(self, timeout=None, pipeline=None):
        """Extend the worker's registration in Redis (``rq info``, rq-dashboard, the health check).

        RQ sends one about five times per job, each three commands, most within milliseconds of
        the last: here one asking for the same TTL as the last, sent under a second ago, is
        skipped, and the rest go in one round trip. The registration then expires at most a second
        earlier than RQ asked; RQ's longest wait between heartbeats (blocking for a job,
        ``worker_ttl`` - 15 s) stays far inside the TTL it gives for it (``worker_ttl`` + 60 s).
        """
        now = time.monotonic()
        last_timeout, last_sent = self._heartbeat_sent
        if timeout == last_timeout and now - last_sent < 1:
            return
        self._heartbeat_sent = (timeout, now)
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        with self.connection.pipeline(transaction=False) as own_pipeline:
            super().heartbeat(timeout, own_pipeline)
            own_pipeline.execute()

    def set_state(self, state, pipeline=None):
        """Write the worker's state (what ``rq info`` and rq-dashboard show) when it changes, and
        with a heartbeat when written on its own: after each job RQ sets IDLE, sends a heartbeat,
        and sets IDLE again before waiting for the next job; here that is one round trip."""
        if pipeline is not None:
            super().set_state(state, pipeline)
        elif state != self.get_state():
            with self.connection.pipeline(transaction=False) as own_pipeline:
                super().set_state(state, own_pipeline)
                self.heartbeat(pipeline=own_pipeline)
                own_pipeline.execute()

    def get_heartbeat_ttl(self, job, working_time=0.0):
        """How long a started job stays "running" in RQ's started registry without a heartbeat.

        A job run in this process cannot outlive its timeout (RQ stops it with SIGALRM), so a job
        still started shortly after that belongs to a worker that died (SIGKILL, a lost host): RQ's
        registry maintenance (``StartedJobRegistry.cleanup``, which the reconciler runs) then retries
        it. RQ's own margin for this, a minute, suits forked work horses that heartbeat while working.
        """
        return int(job.timeout) + current_app.config["JOB_ABANDONED_GRACE_SECONDS"]


def refusal(job):
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


def run_worker():
    """Run an RQ worker (with the scheduler, for retries) until SIGTERM/SIGINT; outlive Redis outages."""
    config = current_app.config
    stop, backoff = GracefulStop(), Backoff(maximum=config["RECONNECT_MAX_SECONDS"])
    while not stop.requested:
        worker = None
        try:
            # No socket timeout: the worker blocks on BLPOP for minutes at a time. RQ already
            # asks Redis for this client's address when the worker is made.
            worker = OrdersWorker(
                [config["RQ_QUEUE"]],
                connection=redis.Redis.from_url(config["REDIS_URL"]),
                serializer=JSONSerializer,
                job_class=OrdersJob,
            )
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
