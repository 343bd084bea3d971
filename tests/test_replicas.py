"""Every process scaled out on one machine: two web servers, two relays, two consumers and two
workers on one database, one Redis and one broker. Each order is published once, enqueued once
and processed once, whichever replicas handle it."""

import json
import re
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis import Redis
from rq import Worker
from rq.job import Job
from sqlalchemy import create_engine, text

from support.broker import drain
from support.client import Stack
from support.commands import PROCESSES, start_process
from support.network import free_port
from support.polling import wait_for
from support.settings import PASSWORD, TEST_REDIS_URL

pytestmark = pytest.mark.system

REPLICAS = 2
ORDERS = 20
STARTUP_SECONDS = 60  # eight Python processes start at once on a machine that may be busy
UUID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
PUBLISHED = rf"Published new_order event \S+ for order {UUID}"
ENQUEUED = rf"Enqueued processing of order {UUID}"
PROCESSED = rf"Order {UUID} processed"


@pytest.fixture
def tap(broker, topology):
    """A queue of the test's own bound like ``new_order``: a copy of every event the relays publish."""
    queue = broker.queue_declare("", exclusive=True).method.queue
    broker.queue_bind(queue, topology.exchange, routing_key=topology.routing_key)
    return lambda: drain(broker, queue)


@pytest.fixture
def replicas(database, tap, tmp_path):
    """``REPLICAS`` of each process; one Stack per web server, all sharing the logs."""
    settings = {
        "FLASK_PASSWORD_HASH_TIME_COST": "1",
        "FLASK_PASSWORD_HASH_MEMORY_COST": "1024",
        "WEB_CONCURRENCY": "1",
        "PROCESSING_DELAY_SECONDS": "0.2",  # a job takes a while: the other worker takes the next
    }
    web_ports = [free_port() for _ in range(REPLICAS)]
    logs, processes = {}, {}
    for kind, command in PROCESSES.items():
        for replica in range(REPLICAS):
            name = f"{kind}-{replica}"
            logs[name] = tmp_path / f"{name}.log"
            bind = {"GUNICORN_BIND": f"127.0.0.1:{web_ports[replica]}"} if kind == "web" else {}
            processes[name] = start_process(command, stdout=logs[name].open("w"), **settings, **bind)
    stacks = [Stack(f"http://127.0.0.1:{port}", logs) for port in web_ports]
    try:
        for stack in stacks:
            wait_for(stack.ready, timeout=STARTUP_SECONDS, message="a web server")
        for kind, started in (("relay", "Relay publishing"), ("consumer", "Consuming queue")):
            for replica in range(REPLICAS):
                name = f"{kind}-{replica}"
                wait_for(
                    lambda name=name, started=started: started in stacks[0].log(name),
                    timeout=STARTUP_SECONDS,
                    message=name,
                )
        redis = Redis.from_url(TEST_REDIS_URL)
        wait_for(
            lambda: len(Worker.all(connection=redis)) == REPLICAS,
            timeout=STARTUP_SECONDS,
            message="the workers",
        )
        yield stacks
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        exit_codes = {name: process.wait(timeout=30) for name, process in processes.items()}
    assert exit_codes == dict.fromkeys(processes, 0), {
        name: stacks[0].log(name)[-2000:] for name in processes
    }


def occurrences(stack, kind, pattern):
    """How often each order id appears in ``pattern`` (one group) over the logs of every ``kind`` replica."""
    counts = Counter()
    for replica in range(REPLICAS):
        counts.update(re.findall(pattern, stack.log(f"{kind}-{replica}")))
    return counts


def test_each_order_is_published_enqueued_and_processed_once(replicas, tap, database):
    first, second = replicas
    assert first.call("POST", "/register/", {"email": "many@example.com", "password": PASSWORD})[0] == 201
    # A token from one web server is good on the other: nothing lives in a process.
    status, tokens = second.call(
        "POST", "/token", form={"username": "many@example.com", "password": PASSWORD}
    )
    assert status == 200
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}

    def place(number):
        """Place an order through one of the web servers: ``(order id, that server's index)``."""
        server = number % REPLICAS
        items = [{"name": f"Item {number}", "quantity": 1, "price": "1.00"}]
        status, order = replicas[server].call("POST", "/orders/", {"items": items}, headers=auth)
        assert status == 201, order
        return order["id"], server

    with ThreadPoolExecutor(max_workers=8) as pool:
        placed_through = dict(pool.map(place, range(ORDERS)))
    order_ids = set(placed_through)
    assert len(order_ids) == ORDERS

    engine = create_engine(database)

    def unprocessed():
        with engine.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM orders WHERE processed_at IS NULL"))

    wait_for(lambda: unprocessed() == 0, timeout=60, message="every order processed")
    # Read back through the web server that did not take the order: the processed state is shared.
    for order_id, server in placed_through.items():
        other = replicas[(server + 1) % REPLICAS]
        status, order = other.call("GET", f"/orders/{order_id}/", headers=auth)
        assert status == 200 and order["processed_at"] is not None

    once = Counter(dict.fromkeys(order_ids, 1))
    # Published once: one confirmed publish in the relays' logs and one message on the exchange.
    assert occurrences(first, "relay", PUBLISHED) == once
    assert Counter(json.loads(body)["order_id"] for _, body in tap()) == once
    with engine.connect() as connection:
        outbox = connection.execute(
            text("SELECT payload->>'order_id', published_at FROM outbox_events")
        ).all()
    engine.dispose()
    assert Counter(order_id for order_id, _ in outbox) == once
    assert all(published_at is not None for _, published_at in outbox)
    # Enqueued once: one job per order, under the order's own id, enqueued by one consumer.
    assert occurrences(first, "consumer", ENQUEUED) == once
    redis = Redis.from_url(TEST_REDIS_URL)
    for order_id in order_ids:
        assert Job.fetch(f"process-order-{order_id}", connection=redis).get_status() == "finished"
    # Processed once, across both workers (which replica takes how much is the broker's and
    # Redis's choice, and on two busy cores one replica may take it all: not asserted).
    assert occurrences(first, "worker", PROCESSED) == once
