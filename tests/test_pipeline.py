"""The event pipeline end to end: the real processes (gunicorn web, relay, consumer, RQ worker) on the test
database, Redis db and RabbitMQ names; an order goes in over HTTP and comes out processed."""

import json
import signal
import urllib.parse
import urllib.request
from contextlib import contextmanager
from urllib.error import HTTPError

import pytest
from redis import Redis
from rq import Worker

from helpers import CONSUMER, PASSWORD, RELAY, TEST_REDIS_URL, WORKER, free_port, start_process, wait_for

PROCESSES = {
    "web": ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
    "relay": RELAY,
    "consumer": CONSUMER,
    "worker": WORKER,
}


class Stack:
    def __init__(self, base_url, logs):
        self.base_url, self.logs = base_url, logs

    def call(self, method, path, body=None, form=None, headers=None):
        """One HTTP request: a JSON ``body`` or a ``form``; returns ``(status, decoded JSON)``."""
        headers, data = dict(headers or {}), None
        if body is not None:
            headers["Content-Type"], data = "application/json", json.dumps(body).encode()
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()  # urllib sends it as a form
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def log(self, name):
        return self.logs[name].read_text()

    def ready(self):
        try:
            return self.call("GET", "/health/ready")[0] == 200
        except OSError:  # not listening yet
            return False


@contextmanager
def running_stack(tmp_path, **settings):
    """The four processes on a free port, ready; stopped with SIGTERM after, each exiting with 0."""
    port = free_port()
    settings = {
        "FLASK_PASSWORD_HASH_TIME_COST": "1",
        "FLASK_PASSWORD_HASH_MEMORY_COST": "1024",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        **settings,
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


@pytest.fixture
def stack(database, broker, tmp_path):
    with running_stack(tmp_path) as stack:
        yield stack


def signed_in(stack, email):
    """Register ``email`` and log in: the Authorization header."""
    assert stack.call("POST", "/register/", {"email": email, "password": PASSWORD})[0] == 201
    status, tokens = stack.call("POST", "/token", form={"username": email, "password": PASSWORD})
    assert status == 200
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_an_order_posted_over_http_is_processed_by_the_pipeline(stack):
    auth = {**signed_in(stack, "e2e@example.com"), "X-Request-ID": "e2e-request-1"}
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
