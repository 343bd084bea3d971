"""RQ jobs are stored as JSON, never as pickles that would run code in whichever worker loads them."""

import json
import zlib

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import DefaultSerializer

from orders_app.job_queue import enqueue_process_order, job_id

from support.commands import WORKER, start_process
from support.polling import wait_for
from support.settings import make_app


def test_jobs_are_enqueued_as_json(database, rq_redis):
    app = make_app()
    enqueue_process_order(app.config, rq_redis, "5b0c2a4e-7d4e-4a43-9a39-0d3b9e1c2f10", "req-json")
    stored = rq_redis.hget(f"rq:job:{job_id('5b0c2a4e-7d4e-4a43-9a39-0d3b9e1c2f10')}", "data")
    function, _instance, args, _kwargs = json.loads(zlib.decompress(stored))
    assert function == "orders_app.jobs.process_order"
    assert args == ["5b0c2a4e-7d4e-4a43-9a39-0d3b9e1c2f10"]


@pytest.mark.system
def test_the_worker_never_unpickles_a_job(database, rq_redis, tmp_path):
    planted = tmp_path / "planted"
    # What anyone who can write to Redis could queue: a pickled call of their choosing.
    job = Queue("orders", connection=rq_redis, serializer=DefaultSerializer).enqueue(planted.touch)
    worker = start_process(WORKER)
    try:
        wait_for(
            lambda: job.id in FailedJobRegistry("orders", connection=rq_redis), message="the job refused"
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert not planted.exists()
