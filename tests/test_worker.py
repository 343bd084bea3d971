"""The worker's bookkeeping in Redis: fewer round trips than RQ's own, the same registration.

``rq info``, rq-dashboard and the container's health check read the worker's hash; RQ's registry
maintenance drops a worker whose hash expired. It must outlast each wait for a job.
"""

import pytest
from redis import Redis
from rq import Worker
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from orders_app.job_queue import enqueue_process_order
from orders_app.worker import OrdersWorker

from helpers import TEST_REDIS_URL, WORKER, place_order, start_process, wait_for


@pytest.fixture
def rq_redis():
    return Redis.from_url(TEST_REDIS_URL)


@pytest.fixture
def worker(app, rq_redis):
    """A worker in this process, not working: its heartbeats and states are called one by one."""
    return OrdersWorker(["orders"], connection=rq_redis, serializer=JSONSerializer)


def last_heartbeat(rq_redis, worker):
    return rq_redis.hget(worker.key, "last_heartbeat")


def test_a_heartbeat_repeating_the_last_one_within_a_second_is_skipped(worker, rq_redis):
    worker.heartbeat()
    first = last_heartbeat(rq_redis, worker)
    worker.heartbeat()
    assert last_heartbeat(rq_redis, worker) == first

    def sent_again():
        worker.heartbeat()
        return last_heartbeat(rq_redis, worker) != first

    wait_for(sent_again, timeout=3, message="a heartbeat sent once a second has passed")


def test_a_heartbeat_asking_for_another_ttl_is_sent_at_once(worker, rq_redis):
    worker.heartbeat()
    assert rq_redis.ttl(worker.key) > worker.dequeue_timeout
    worker.heartbeat(40)  # a job starts: RQ asks for its timeout and a margin
    assert rq_redis.ttl(worker.key) <= 40
    worker.heartbeat()  # the job ended: the registration must outlast the wait for the next
    assert rq_redis.ttl(worker.key) > worker.dequeue_timeout


def test_a_state_set_on_its_own_is_written_with_a_heartbeat_when_it_changes(worker, rq_redis):
    worker.heartbeat(40)
    worker.set_state(WorkerStatus.IDLE)
    assert rq_redis.hget(worker.key, "state") == b"idle"
    assert rq_redis.ttl(worker.key) > worker.dequeue_timeout
    rq_redis.hset(worker.key, "state", "overwritten by the test")
    worker.set_state(WorkerStatus.IDLE)  # no change: nothing written
    assert rq_redis.hget(worker.key, "state") == b"overwritten by the test"


def test_rq_sees_the_worker_busy_during_a_job_then_idle_and_registered_past_its_wait(
    app, client, alice, rq_redis
):
    order = place_order(client, alice["headers"])
    job = enqueue_process_order(app.config, rq_redis, order["id"], None)
    process = start_process(WORKER, PROCESSING_DELAY_SECONDS="1")

    def the_worker():
        workers = Worker.all(connection=rq_redis, serializer=JSONSerializer)
        return workers[0] if workers else None

    try:
        wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, message="the job started")
        busy = the_worker()
        assert busy.get_state() == WorkerStatus.BUSY
        job_ttl = app.config["JOB_TIMEOUT_SECONDS"] + app.config["JOB_ABANDONED_GRACE_SECONDS"]
        assert 0 < rq_redis.ttl(busy.key) <= job_ttl  # the heartbeat of the job's start was sent
        wait_for(lambda: the_worker().get_state() == WorkerStatus.IDLE, message="the worker idle again")
        assert job.get_status(refresh=True) == JobStatus.FINISHED
        idle = the_worker()
        assert rq_redis.ttl(idle.key) > idle.dequeue_timeout  # it now blocks for a job that long
        assert idle.successful_job_count == 1
    finally:
        process.terminate()
        process.wait(timeout=20)
