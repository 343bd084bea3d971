"""RQ as the service runs it: jobs that never run callbacks, unique jobs enqueued many at a time,
and a worker that runs jobs in its own process, with fewer Redis round trips, and can fail a job
without running it.

Tested in tests/test_worker.py, tests/test_reconciler.py, tests/test_consumer_batches.py and
tests/test_library_contracts.py.
"""

import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.scripts import UNIQUE_ENQUEUE_SCRIPT, _build_hset_args
from rq.utils import now


class OrdersJob(Job):
    """A job that never runs a callback. Callbacks are named in the job's hash, which whoever can
    write to Redis sets, and RQ imports and calls them outside the worker's job, too (cleaning up
    an abandoned job, in the reconciler and in every worker)."""

    success_callback = failure_callback = stopped_callback = None


def enqueue_unique(queue: Queue, jobs: Sequence[Job]) -> list[bool]:
    """Enqueue each job unless a job with its id exists, all in one round trip: whether each was new.

    RQ's ``enqueue_job(..., unique=True)`` runs its Lua script (exists? else save and push) on its
    own, after registering the queue in a transaction: two round trips per job. Here the queue is
    registered once and the same script follows for each job in one pipeline, sent whole (EVAL):
    EVALSHA in a pipeline costs one more round trip, redis-py's check that the server has it.
    """
    with queue.connection.pipeline(transaction=False) as pipeline:
        pipeline.sadd(queue.redis_queues_keys, queue.key)
        for job in jobs:
            queue._prepare_for_queue(job)  # what RQ's unique enqueue sets before its script
            ttl = -1 if job.ttl is None else job.ttl
            fields = _build_hset_args(job)  # type: ignore[no-untyped-call]  # the job's hash, as RQ writes it
            pipeline.eval(UNIQUE_ENQUEUE_SCRIPT, 2, job.key, queue.key, job.id, "R", ttl, *fields)
        _, *saved = pipeline.execute()
    return [bool(new) for new in saved]


def delete_job(job: Job) -> None:
    """Delete ``job``. RQ reads each of its executions first, and raises ``ValueError`` for one whose
    record expired in between (that of a worker that died or was paused mid-job): then the job's
    index of executions goes first (their records expire by themselves)."""
    try:
        job.delete()
    except ValueError:
        job.connection.delete(job.execution_registry.key)
        job.delete()


class Worker(SimpleWorker):
    """An RQ worker running jobs in its own process (no fork per job: its database pool stays warm,
    docs/decisions/0024; SIGTERM still lets the job in hand finish, and job timeouts still apply).

    ``abandoned_grace_seconds``: how long after its timeout a started job counts as abandoned.
    """

    stop_signalled = False
    # The TTL the last heartbeat asked for (None: RQ's default), and when it was sent.
    _heartbeat_sent: tuple[int | None, float] = (None, float("-inf"))
    # When ``rq suspend`` was last looked for.
    _suspension_checked = float("-inf")

    def __init__(self, *args: Any, abandoned_grace_seconds: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.abandoned_grace_seconds = abandoned_grace_seconds

    def fail_without_running(self, job: Job, queue: Queue, execution: Execution, reason: str) -> None:
        """Fail ``job`` for good, unrun: no retry, no webhook, no callback of its own."""
        job.retries_left, job.webhooks = None, []
        # RQ's preparation of a job (skipped: it reads the function's name, which may be unreadable)
        # takes it out of the queue's intermediate list, where RQ's cleanup would fail it again.
        IntermediateQueue(queue.key, connection=self.connection).remove(job.id)
        self.handle_job_failure(
            job,
            queue,
            started_job_registry=queue.started_job_registry,
            exc_string=f"Refused: {reason}",
            execution=execution,
        )

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signalled = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # unannotated in RQ

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
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

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
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

    def check_for_suspension(self, burst: bool) -> None:
        """Look for ``rq suspend`` (and wait while it holds) at most once a second, not before
        every job: a round trip per job saved, and a suspension takes effect within a second."""
        looking_at = time.monotonic()
        if looking_at - self._suspension_checked < 1:
            return
        self._suspension_checked = looking_at
        super().check_for_suspension(burst)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """Note when the job ended, without RQ's job heartbeat (a round trip): that keeps a forked
        work horse's job alive while its success callback runs; here no callback runs, and the
        next round trip finishes the job."""
        job.ended_at = now()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long a started job stays "running" in RQ's started registry without a heartbeat.

        A job run in this process cannot outlive its timeout (RQ stops it with SIGALRM), so a job
        still started shortly after that belongs to a worker that died (SIGKILL, a lost host): RQ's
        registry maintenance (``StartedJobRegistry.cleanup``, which the reconciler runs) then retries
        it. RQ's own margin for this, a minute, suits forked work horses that heartbeat while working.
        """
        if job.timeout is None:  # not as job_queue writes jobs: RQ's own margin (never a crash)
            return int(super().get_heartbeat_ttl(job, working_time))
        return int(job.timeout) + self.abandoned_grace_seconds
