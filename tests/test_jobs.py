"""The event pipeline: the process_order job on RQ, against real PostgreSQL and Redis."""

import re
import uuid
from datetime import timedelta

from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import insert

from orders_app.config import Defaults
from orders_app.extensions import db
from orders_app.job_queue import enqueue_process_order, job_id
from orders_app.models import Order

from support.client import place_order
from support.jobs import run_jobs
from support.settings import make_app


def enqueue(app, rq_redis, order_id):
    return enqueue_process_order(app.config, rq_redis, order_id, "req-job")


def test_processing_sets_processed_at_and_writes_it_through_to_the_cache(app, client, alice, rq_redis, capfd):
    order = place_order(client, alice["headers"])
    url = f"/orders/{order['id']}/"
    client.get(url, headers=alice["headers"])  # cached while unprocessed
    enqueue(app, rq_redis, order["id"])
    run_jobs(app, rq_redis)
    assert capfd.readouterr().out.count(f"Order {order['id']} processed") == 1
    read = client.get(url, headers=alice["headers"])
    assert read.headers["X-Cache"] == "HIT"
    assert read.json["processed_at"] is not None
    assert (
        Job.fetch(job_id(order["id"]), connection=rq_redis, serializer=JSONSerializer).get_status()
        == JobStatus.FINISHED
    )


def test_a_repeated_run_changes_nothing(app, client, alice, rq_redis, capfd):
    order = place_order(client, alice["headers"])
    enqueue(app, rq_redis, order["id"])
    run_jobs(app, rq_redis)
    first = client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json
    Job.fetch(
        job_id(order["id"]), connection=rq_redis, serializer=JSONSerializer
    ).delete()  # let the same job id run again
    enqueue(app, rq_redis, order["id"])
    run_jobs(app, rq_redis)
    again = Job.fetch(job_id(order["id"]), connection=rq_redis, serializer=JSONSerializer)
    assert again.get_status() == JobStatus.FINISHED  # it ran, found the order processed, and ended
    assert client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json == first
    assert capfd.readouterr().out.count("processed") == 1


def test_processing_takes_the_configured_delay(database, client, alice, rq_redis):
    assert Defaults.PROCESSING_DELAY_SECONDS == 2  # tests otherwise use 0
    app = make_app(PROCESSING_DELAY_SECONDS=0.3)
    order = place_order(client, alice["headers"])
    enqueue(app, rq_redis, order["id"])
    run_jobs(app, rq_redis)
    job = Job.fetch(job_id(order["id"]), connection=rq_redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED
    assert job.ended_at - job.started_at >= timedelta(seconds=0.3)  # the run as RQ recorded it


def test_a_job_failing_twice_then_succeeding_is_processed(database, alice, rq_redis):
    app = make_app(JOB_RETRY_INTERVALS=[0, 0, 0])  # retry at once
    order_id = uuid.uuid4()  # the job fails while its order does not exist (yet)
    enqueue(app, rq_redis, order_id)
    for attempt in (1, 2):
        run_jobs(app, rq_redis, max_jobs=1)
        job = Job.fetch(job_id(order_id), connection=rq_redis, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.QUEUED  # requeued for a retry
        assert job.retries_left == 3 - attempt
    with app.app_context():
        db.session.execute(
            insert(Order).values(
                id=order_id, user_id=alice["user"]["id"], items=[], total_price=1, status="PENDING"
            )
        )
        db.session.commit()
    run_jobs(app, rq_redis)
    assert (
        Job.fetch(job_id(order_id), connection=rq_redis, serializer=JSONSerializer).get_status()
        == JobStatus.FINISHED
    )
    with app.app_context():
        assert db.session.get(Order, order_id).processed_at is not None


def test_a_job_that_keeps_failing_lands_in_the_failed_registry(database, rq_redis):
    app = make_app(JOB_RETRY_INTERVALS=[0, 0, 0])
    order_id = uuid.uuid4()
    enqueue(app, rq_redis, order_id)
    run_jobs(app, rq_redis)  # the first run and its 3 retries
    queue = Queue("orders", connection=rq_redis)
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job_id(order_id)]
    job = Job.fetch(job_id(order_id), connection=rq_redis, serializer=JSONSerializer)
    assert job.retries_left == 0
    assert "does not exist" in job.latest_result().exc_string


def test_the_job_id_is_a_legal_rq_id():
    order_id = uuid.uuid4()
    assert job_id(order_id) == f"process-order-{order_id}"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", job_id(order_id))
