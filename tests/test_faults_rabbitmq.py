"""RabbitMQ restarted under the pipeline, on a private node (the shared one serves everyone):
``rabbitmqctl stop_app``/``start_app``, and the broker process killed and started again, while
the relay has events to publish and the consumer holds delivered, unacknowledged messages.

Every order is processed all the same, by the pipeline alone (the reconciler's grace is an hour),
and no process exits.
"""

import os
import signal

import pika
import pytest
from redis import Redis
from rq import Worker
from sqlalchemy import func, select

from orders_app.extensions import db
from orders_app.models import Order

from support.broker import ready_count
from support.client import place_order
from support.commands import CONSUMER, RELAY, WORKER
from support.database import unpublished
from support.polling import wait_for
from support.settings import TEST_REDIS_URL

pytestmark = pytest.mark.system

pytest_plugins = ["support.servers", "support.processes"]


def processed(app):
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(Order).where(Order.processed_at.is_not(None))
        )


def ready_on(rabbitmq, topology):
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
    try:
        return ready_count(connection.channel(), topology.queue)
    finally:
        connection.close()


@pytest.mark.parametrize("outage", ["stop_app", "killed"])
def test_the_pipeline_rides_out_a_rabbitmq_restart(
    outage, app, client, alice, topology, private_rabbitmq, processes
):
    settings = {
        "RABBITMQ_URL": private_rabbitmq.url,
        "FLASK_RECONCILE_AFTER_SECONDS": "3600",
        "FLASK_RECONNECT_MAX_SECONDS": "1",
        "FLASK_RELAY_SWEEP_SECONDS": "0.5",
    }
    for name, command in (("relay", RELAY), ("consumer", CONSUMER), ("worker", WORKER)):
        processes.start(name, command, **settings)
    wait_for(
        lambda: "Consuming queue" in processes.current_log("consumer"), timeout=30, message="the consumer"
    )
    wait_for(lambda: Worker.all(connection=Redis.from_url(TEST_REDIS_URL)), timeout=30, message="the worker")
    consumer = processes.running["consumer"]
    os.killpg(consumer.pid, signal.SIGSTOP)  # deliveries reach its socket; it acks none of them
    orders = [place_order(client, alice["headers"]) for _ in range(5)]
    wait_for(lambda: unpublished(app) == 0, message="the events published")
    wait_for(
        lambda: ready_on(private_rabbitmq, topology) == 0, message="the consumer holding them all, unacked"
    )

    if outage == "stop_app":
        private_rabbitmq.ctl("stop_app")
    else:
        private_rabbitmq.kill()
    orders += [place_order(client, alice["headers"]) for _ in range(5)]  # the relay has work, no broker
    wait_for(lambda: "Relay cannot reach a dependency" in processes.current_log("relay"), message="the relay")
    if outage == "stop_app":
        private_rabbitmq.ctl("start_app")
    else:
        private_rabbitmq.start()
    orders += [place_order(client, alice["headers"]) for _ in range(5)]
    os.killpg(consumer.pid, signal.SIGCONT)

    wait_for(lambda: processed(app) == len(orders), timeout=60, message="every order processed")
    assert unpublished(app) == 0
    assert "Consumer cannot reach a dependency" in processes.current_log("consumer")
    assert {name: process.poll() for name, process in processes.running.items()} == dict.fromkeys(
        processes.running
    ), "a process exited"
    assert "Reconciled" not in processes.current_log("relay")
