"""The ``new_order`` queue deleted under the running pipeline (an operator's mistake, a broker's
policy) and declared again: the relay's unroutable events go out again once it is back, the
consumer consumes the new queue, and every order is processed by the pipeline alone."""

import pytest
from redis import Redis
from rq import Worker
from sqlalchemy import func, select

from orders_app.extensions import db
from orders_app.models import Order

from support.client import place_order
from support.commands import CONSUMER, RELAY, WORKER
from support.database import unpublished
from support.polling import wait_for
from support.settings import TEST_REDIS_URL

pytestmark = pytest.mark.system

pytest_plugins = ["support.processes"]


def processed(app):
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(Order).where(Order.processed_at.is_not(None))
        )


def test_orders_are_processed_after_the_queue_is_deleted_and_declared_again(
    app, client, alice, broker, topology, processes
):
    settings = {"FLASK_RECONCILE_AFTER_SECONDS": "3600", "FLASK_RECONNECT_MAX_SECONDS": "1"}
    for name, command in (("relay", RELAY), ("consumer", CONSUMER), ("worker", WORKER)):
        processes.start(name, command, **settings)
    wait_for(
        lambda: "Consuming queue" in processes.current_log("consumer"), timeout=30, message="the consumer"
    )
    wait_for(lambda: Worker.all(connection=Redis.from_url(TEST_REDIS_URL)), timeout=30, message="the worker")
    for _ in range(3):
        place_order(client, alice["headers"])
    wait_for(lambda: processed(app) == 3, message="orders before the deletion")

    broker.queue_delete(topology.queue)
    for _ in range(3):  # unroutable while the queue is gone
        place_order(client, alice["headers"])
    topology.declare(broker)  # if the consumer, reconnecting, has not declared it again already
    for _ in range(3):
        place_order(client, alice["headers"])
    wait_for(lambda: processed(app) == 9, timeout=30, message="every order processed")
    assert unpublished(app) == 0
    assert processes.current_log("consumer").count("Consuming queue") == 2  # cancelled, consuming again
    assert all(process.poll() is None for process in processes.running.values()), "a process exited"
