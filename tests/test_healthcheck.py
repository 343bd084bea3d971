"""Container health checks (``python -m orders_app.healthcheck``) and the heartbeats they read."""

import os
import subprocess
import sys
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
from support.settings import ROOT, TEST_DATABASE_URL, TEST_REDIS_URL, TEST_SECRET, make_app


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
    monkeypatch.setenv("JWT_SECRET_KEY", TEST_SECRET)  # the configuration is loaded as the worker's
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


@pytest.fixture
def dotenv_only(tmp_path):
    """A directory whose ``.env`` holds the service's settings, and an environment without them
    (nor the tests' ``PYTHON_DOTENV_DISABLED``): a command run there reads them from ``.env``."""
    heartbeat = tmp_path / "heartbeat"
    heartbeat.touch()
    (tmp_path / ".env").write_text(
        f"REDIS_URL={TEST_REDIS_URL}\nDATABASE_URL={TEST_DATABASE_URL}\nJWT_SECRET_KEY={TEST_SECRET}\n"
        f"FLASK_HEARTBEAT_FILE={heartbeat}\n"
    )
    unset = {"PYTHON_DOTENV_DISABLED", "REDIS_URL", "DATABASE_URL", "JWT_SECRET_KEY"}
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in unset and not name.startswith("FLASK_")
    }

    def run(*command):
        return subprocess.run(
            [sys.executable, *command],
            cwd=tmp_path,
            env={**environment, "PYTHONPATH": ROOT},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def test_the_worker_check_reads_dotenv_as_the_worker_does(database, dotenv_only):
    worker = Worker(["orders"], connection=Redis.from_url(TEST_REDIS_URL))
    worker.register_birth()  # in the Redis db that only .env names
    try:
        result = dotenv_only("-m", "orders_app.healthcheck", "rq-worker")
    finally:
        worker.register_death()
    assert (result.returncode, result.stdout) == (0, "healthy\n"), result.stderr


def test_the_relay_check_reads_its_heartbeat_file_from_dotenv(dotenv_only):
    # The image's check (``process``) reads PID 1's command: here, the check it picks for the relay.
    relay = ["flask", "--app", "orders_app", "relay"]
    script = f"import sys; from orders_app.healthcheck import process_check as c; sys.exit(not c({relay})())"
    result = dotenv_only("-c", script)
    assert result.returncode == 0, result.stderr


def test_the_checks_import_no_more_than_they_need(database, dotenv_only):
    """They run every few seconds in every container: ``file`` (and ``url``) import nothing of the
    service's, and none imports the app's extensions (Flask-SQLAlchemy, flask-smorest...)."""
    script = (
        "import sys; from orders_app.healthcheck import main; main(sys.argv[1:]); "
        "print(' '.join(sorted(name for name in sys.modules if name.startswith('orders_app'))))"
    )
    light = dotenv_only("-c", script, "file", os.devnull, "60")
    assert light.stdout.splitlines()[-1] == "orders_app orders_app.healthcheck", light.stderr
    worker = dotenv_only("-c", script, "rq-worker")
    assert "orders_app.probes" in worker.stdout, worker.stderr
    assert "orders_app.extensions" not in worker.stdout


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
