"""The event pipeline end to end: the real processes (gunicorn web, relay, consumer, RQ worker) on the test
database, Redis db and RabbitMQ names; an order goes in over HTTP and comes out processed."""

import signal

import pytest
from redis import Redis
from rq import Worker

from support.client import Stack
from support.commands import PROCESSES, start_process
from support.network import free_port
from support.polling import wait_for
from support.settings import PASSWORD, TEST_REDIS_URL

pytestmark = pytest.mark.system


@pytest.fixture
def stack(database, broker, tmp_path):
    port = free_port()
    settings = {
        "FLASK_PASSWORD_HASH_TIME_COST": "1",
        "FLASK_PASSWORD_HASH_MEMORY_COST": "1024",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    logs = {name: tmp_path / f"{name}.log" for name in PROCESSES}
    processes = {
        name: start_process(command, stdout=logs[name].open("w"), **settings)
        for name, command in PROCESSES.items()
    }
    stack = Stack(f"http://127.0.0.1:{port}", logs)
    try:
        wait_for(stack.ready, message="the web process")
        wait_for(lambda: "Relay publishing" in stack.log("relay"), message="the relay")
        wait_for(lambda: "Consuming queue" in stack.log("consumer"), message="the consumer")
        wait_for(lambda: Worker.all(connection=Redis.from_url(TEST_REDIS_URL)), message="the worker")
        yield stack
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        exit_codes = {name: process.wait(timeout=30) for name, process in processes.items()}
    assert exit_codes == dict.fromkeys(PROCESSES, 0), {name: stack.log(name)[-2000:] for name in PROCESSES}


def test_an_order_posted_over_http_is_processed_by_the_pipeline(stack):
    assert stack.call("POST", "/register/", {"email": "e2e@example.com", "password": PASSWORD})[0] == 201
    status, tokens = stack.call("POST", "/token", form={"username": "e2e@example.com", "password": PASSWORD})
    assert status == 200
    auth = {"Authorization": f"Bearer {tokens['access_token']}", "X-Request-ID": "e2e-request-1"}
    items = [{"name": "Tea", "quantity": 3, "price": "2.50"}]
    status, order = stack.call("POST", "/orders/", {"items": items}, headers=auth)
    assert status == 201
    assert order["processed_at"] is None

    def processed():
        return stack.call("GET", f"/orders/{order['id']}/", headers=auth)[1]["processed_at"]

    wait_for(processed, timeout=20, message="processed_at")
    assert f"Order {order['id']} processed" in stack.log("worker")
    for stage in ("relay", "consumer", "worker"):  # every stage logs the order and its request
        lines = [
            line for line in stack.log(stage).splitlines() if order["id"] in line and "e2e-request-1" in line
        ]
        assert lines, f"{stage} logged nothing about order {order['id']} with its request id"
