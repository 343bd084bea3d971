"""Container health checks (``python -m orders_app.healthcheck``) and the heartbeats they read."""

import os
import threading
import time

import pytest
from redis import Redis
from rq import Worker
from werkzeug.serving import make_server

from consumer.consumer import Consumer
from orders_app.events.relay import Relay
from orders_app.healthcheck import main

from support.commands import running
from support.network import closed_port_url
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL, TEST_REDIS_URL, make_app


@pytest.fixture
def web(database):
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_url_check(web):
    assert main(["url", f"{web}/health"]) == 0
    assert main(["url", f"{web}/nope"]) == 1
    assert main(["url", closed_port_url("http", "/health")]) == 1


def test_file_check(tmp_path):
    heartbeat = tmp_path / "heartbeat"
    assert main(["file", str(heartbeat), "60"]) == 1  # missing
    heartbeat.touch()
    assert main(["file", str(heartbeat), "60"]) == 0
    os.utime(heartbeat, (time.time() - 120, time.time() - 120))
    assert main(["file", str(heartbeat), "60"]) == 1


def test_rq_worker_check(database, monkeypatch):
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("DATABASE_URL", TEST_DATABASE_URL)
    assert main(["rq-worker"]) == 1
    worker = Worker(["orders"], connection=Redis.from_url(TEST_REDIS_URL))
    worker.register_birth()
    try:
        assert main(["rq-worker"]) == 0
        # Registered, but PostgreSQL is unreachable: the worker cannot do its job.
        monkeypatch.setenv("DATABASE_URL", closed_port_url("postgresql", "/orders"))
        assert main(["rq-worker"]) == 1
    finally:
        worker.register_death()


@pytest.mark.parametrize("component", [Relay, Consumer])
def test_relay_and_consumer_keep_their_heartbeat_fresh(database, broker, tmp_path, component):
    heartbeat = tmp_path / "heartbeat"
    with running(component, HEARTBEAT_FILE=str(heartbeat)):
        wait_for(heartbeat.exists, message="the first heartbeat")
        first = heartbeat.stat().st_mtime
        wait_for(lambda: heartbeat.stat().st_mtime > first, message="a later heartbeat")


@pytest.mark.parametrize("component", [Relay, Consumer])
def test_the_heartbeat_goes_on_while_a_dependency_is_down_and_stops_with_the_process(
    database, tmp_path, component
):
    heartbeat = tmp_path / "heartbeat"
    check = ["file", str(heartbeat), "1"]  # retries come at most ~1 s apart (RECONNECT_MAX_SECONDS)
    with running(component, HEARTBEAT_FILE=str(heartbeat), RABBITMQ_URL=closed_port_url("amqp", "/%2F")):
        wait_for(heartbeat.exists, message="a heartbeat between retries")
        first = heartbeat.stat().st_mtime
        wait_for(lambda: heartbeat.stat().st_mtime > first, message="a heartbeat after the next retry")
        assert main(check) == 0
    wait_for(lambda: main(check) == 1, message="the stopped process's heartbeat to go stale")
