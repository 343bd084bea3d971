"""A worker paused (SIGSTOP) in the middle of a job, past the job's timeout: its job counts as
abandoned (its heartbeat TTL is the timeout plus ``JOB_ABANDONED_GRACE_SECONDS``), the reconciler's
cleanup retries it and the other worker processes the order. Resumed, the paused worker's job
ends (its timeout fires) without processing the order a second time, and the worker goes on."""

import os
import signal
import time

import pytest
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import select

from orders_app.extensions import db
from orders_app.job_queue import enqueue_process_order
from orders_app.models import Order
from orders_app.reconciler import reconcile

from support.client import place_order
from support.commands import WORKER
from support.polling import wait_for
from support.settings import TEST_REDIS_URL, make_app

pytest_plugins = ["support.processes"]

SETTINGS = {"JOB_TIMEOUT_SECONDS": 3, "JOB_ABANDONED_GRACE_SECONDS": 1, "JOB_RETRY_INTERVALS": [1, 1, 1]}


@pytest.mark.system
def test_a_worker_paused_past_its_job_timeout_loses_the_job_to_another_and_nothing_runs_twice(
    database, client, alice, processes
):
    environment = {f"FLASK_{key}": str(value) for key, value in SETTINGS.items()}
    for name in ("worker-0", "worker-1"):
        processes.start(name, WORKER, PROCESSING_DELAY_SECONDS="2", **environment)
    rq_redis = Redis.from_url(TEST_REDIS_URL)
    wait_for(lambda: len(Worker.all(connection=rq_redis)) == 2, timeout=30, message="two workers")
    app = make_app(RECONCILE_AFTER_SECONDS=1, **SETTINGS)
    order = place_order(client, alice["headers"])
    enqueue_process_order(app.config, rq_redis, order["id"], None)

    def running_it():
        started = f"Processing order {order['id']}"
        return next((name for name in processes.running if started in processes.current_log(name)), None)

    paused = wait_for(running_it, message="a worker to start the job")
    os.killpg(processes.running[paused].pid, signal.SIGSTOP)  # its scheduler too

    def processed_at():
        with app.app_context():
            reconcile()  # RQ's cleanup of the abandoned job first, as the relay runs it
            return db.session.scalar(select(Order.processed_at).where(Order.id == order["id"]))

    first = wait_for(processed_at, timeout=30, interval=0.5, message="the order processed meanwhile")
    os.killpg(processes.running[paused].pid, signal.SIGCONT)
    wait_for(
        lambda: "exception raised while executing" in processes.current_log(paused),
        message="the job's timeout",
    )
    with app.app_context():
        reconcile()
        assert db.session.scalar(select(Order.processed_at).where(Order.id == order["id"])) == first
        db.engine.dispose()
    assert processes.output("worker").count(f"Order {order['id']} processed") == 1
    assert all(process.poll() is None for process in processes.running.values()), "a worker exited"


def test_the_reconciler_repairs_a_job_whose_execution_record_expired(database, client, alice):
    """What the paused worker leaves behind, made at once: a failed job whose index of executions
    names one whose record has expired. RQ's ``Job.delete`` raised ``ValueError`` on it, which
    stopped the relay running the reconciler."""
    rq_redis = Redis.from_url(TEST_REDIS_URL)
    app = make_app(RECONCILE_AFTER_SECONDS=0)
    order = place_order(client, alice["headers"])
    job = enqueue_process_order(app.config, rq_redis, order["id"], None)
    job.set_status(JobStatus.FAILED)
    rq_redis.zadd(job.execution_registry.key, {"expired-execution": time.time() + 3600})
    with app.app_context():
        assert reconcile() == 1
        db.engine.dispose()
    assert Job.fetch(job.id, connection=rq_redis, serializer=JSONSerializer).get_status() == JobStatus.QUEUED
