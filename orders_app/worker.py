"""The RQ worker that runs ``process_order`` (``flask worker``), and its restart loop."""

import logging
import time

import redis
from flask import current_app
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from .lifecycle import Backoff, GracefulStop

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
