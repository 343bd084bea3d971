"""A slow or silent network between the pipeline and its dependencies, through TCP proxies.

- Blackholed: RabbitMQ stops receiving anything from the relay and the consumer (the proxy holds
  it) while it still sends; nothing errors on the client side. The broker closes the connections
  when their heartbeats stop arriving (``RABBITMQ_HEARTBEAT_SECONDS``), and both processes
  reconnect once the network is back: every order is processed.
- Slow: every chunk sent to RabbitMQ and Redis delayed; slower, but no outage is declared.
"""

import pytest
from redis import Redis
from rq import Worker
from sqlalchemy import func, select

from orders_app.extensions import db
from orders_app.models import Order

from support.client import place_order
from support.commands import CONSUMER, RELAY, WORKER
from support.database import unpublished
from support.network import TcpProxy
from support.polling import wait_for
from support.settings import TEST_RABBITMQ_URL, TEST_REDIS_URL

pytestmark = pytest.mark.system

pytest_plugins = ["support.processes"]

OUTAGE = "cannot reach a dependency"


def processed(app):
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(Order).where(Order.processed_at.is_not(None))
        )


def start_pipeline(processes, **settings):
    settings = {"FLASK_RECONCILE_AFTER_SECONDS": "3600", "FLASK_RECONNECT_MAX_SECONDS": "1", **settings}
    for name, command in (("relay", RELAY), ("consumer", CONSUMER), ("worker", WORKER)):
        processes.start(name, command, **settings)
    wait_for(
        lambda: "Consuming queue" in processes.current_log("consumer"), timeout=30, message="the consumer"
    )
    wait_for(lambda: Worker.all(connection=Redis.from_url(TEST_REDIS_URL)), timeout=30, message="the worker")


def test_a_blackholed_broker_is_left_after_its_heartbeats_and_the_pipeline_resumes(
    app, client, alice, broker, processes
):
    rabbitmq = TcpProxy(TEST_RABBITMQ_URL).start()
    start_pipeline(processes, RABBITMQ_URL=rabbitmq.url, FLASK_RABBITMQ_HEARTBEAT_SECONDS="2")
    place_order(client, alice["headers"])
    wait_for(lambda: processed(app) == 1, message="an order before the blackhole")

    rabbitmq.hold()  # publishes, acks and heartbeats from the service go nowhere
    for _ in range(3):
        place_order(client, alice["headers"])
    for name in ("relay", "consumer"):
        wait_for(
            lambda name=name: OUTAGE in processes.current_log(name),
            timeout=30,
            message=f"the {name} to give up",
        )
    assert processed(app) == 1
    rabbitmq.release()
    wait_for(lambda: processed(app) == 4, timeout=30, message="every order processed")
    assert unpublished(app) == 0
    assert all(process.poll() is None for process in processes.running.values()), "a process exited"
    rabbitmq.stop()


def test_slow_dependencies_slow_the_pipeline_down_without_an_outage(app, client, alice, broker, processes):
    rabbitmq = TcpProxy(TEST_RABBITMQ_URL, latency=0.05).start()
    redis = TcpProxy(TEST_REDIS_URL, latency=0.05).start()  # 20 times less than its socket timeout
    start_pipeline(processes, RABBITMQ_URL=rabbitmq.url, REDIS_URL=redis.url)
    for _ in range(5):
        place_order(client, alice["headers"])
    wait_for(lambda: processed(app) == 5, timeout=60, message="every order processed")
    for name in ("relay", "consumer", "worker"):
        log = processes.current_log(name)
        assert OUTAGE not in log and "lost Redis" not in log, log[-2000:]
    rabbitmq.stop()
    redis.stop()
