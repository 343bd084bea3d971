"""Redis unreachable, not only flushed, while a worker runs (a private redis-server, crashed and
started again empty): the worker's restart loop ("Worker lost Redis") keeps the process alive
(RQ asks Redis for the client's address as soon as a worker is made: that too is retried), the
job in hand still sets its order processed, and jobs enqueued once Redis is back run."""

import pytest
from redis import Redis
from rq import Worker
from sqlalchemy import select

from orders_app.extensions import db
from orders_app.job_queue import enqueue_process_order
from orders_app.models import Order

from support.client import place_order
from support.commands import WORKER
from support.polling import wait_for
from support.settings import make_app

pytestmark = pytest.mark.system

pytest_plugins = ["support.servers", "support.processes"]


def processed_at(app, order):
    with app.app_context():
        return db.session.scalar(select(Order.processed_at).where(Order.id == order["id"]))


def test_a_worker_outlives_a_redis_crash_and_runs_jobs_once_redis_is_back(
    app, client, alice, private_redis, processes
):
    settings = {
        "REDIS_URL": private_redis.url,
        "PROCESSING_DELAY_SECONDS": "1",
        "FLASK_RECONNECT_MAX_SECONDS": "1",
    }
    worker = processes.start("worker", WORKER, **settings)
    redis = Redis.from_url(private_redis.url)
    wait_for(lambda: Worker.all(connection=redis), timeout=30, message="the worker")
    config = make_app(REDIS_URL=private_redis.url).config
    in_hand = place_order(client, alice["headers"])
    enqueue_process_order(config, redis, in_hand["id"], None)
    wait_for(
        lambda: f"Processing order {in_hand['id']}" in processes.current_log("worker"), message="the job"
    )

    private_redis.kill()  # mid-job: the worker cannot report it, nor take the next
    # Its restart loop: the worker in hand gives up, and the next one cannot even be made.
    wait_for(lambda: processes.current_log("worker").count("Worker lost Redis") >= 2, message="two restarts")
    assert processed_at(app, in_hand) is not None
    private_redis.start()  # empty, on the same port
    after = place_order(client, alice["headers"])
    enqueue_process_order(config, redis, after["id"], None)
    wait_for(lambda: processed_at(app, after), timeout=30, message="a job enqueued after Redis came back")
    assert worker.poll() is None
    assert processes.stop_all() == {"worker": 0}  # and it still stops cleanly
