"""The API, operations: /health and /health/ready."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.network import TcpProxy, closed_port_url, silent_server
from support.polling import wait_for
from support.settings import TEST_RABBITMQ_URL, make_app


@pytest.fixture
def everything_down(database):
    """A client whose PostgreSQL, Redis and RabbitMQ are all unreachable."""
    return make_app(
        SQLALCHEMY_DATABASE_URI=closed_port_url("postgresql+psycopg2", "/x"),
        REDIS_URL=closed_port_url("redis"),
        RABBITMQ_URL=closed_port_url("amqp"),
    ).test_client()


def test_health_is_ok_without_touching_anything(everything_down):
    response = everything_down.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_ready_when_every_dependency_answers(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "rabbitmq": "ok"}}


def test_not_ready_names_each_failing_dependency_and_only_the_log_says_how(everything_down, caplog):
    response = everything_down.get("/health/ready")
    assert response.status_code == 503
    # A fixed word: no exception class or message tells the public what runs behind the service.
    assert response.json == {
        "status": "failing",
        "checks": {"database": "failing", "redis": "failing", "rabbitmq": "failing"},
    }
    assert "Readiness check database failed: OperationalError: " in caplog.text


def test_one_failing_dependency_is_named_and_the_others_stay_ok(database):
    response = make_app(RABBITMQ_URL=closed_port_url("amqp")).test_client().get("/health/ready")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["database"] == "ok" and checks["redis"] == "ok"
    assert checks["rabbitmq"] == "failing"


def test_hanging_dependencies_time_out_quickly(database):
    with silent_server() as redis_port, silent_server() as rabbitmq_port:
        app = make_app(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{rabbitmq_port}/%2F",
            HEALTH_CHECK_TIMEOUT=0.5,
        )
        started = time.monotonic()
        response = app.test_client().get("/health/ready")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["redis"] == response.json["checks"]["rabbitmq"] == "failing"
    assert elapsed < 3


@pytest.fixture
def broker_proxy():
    proxy = TcpProxy(TEST_RABBITMQ_URL)
    yield proxy
    proxy.stop()


def test_a_flood_of_probes_opens_one_broker_connection(database, broker_proxy):
    client = make_app(RABBITMQ_URL=broker_proxy.start().url, HEALTH_CACHE_SECONDS=60).test_client()
    assert {client.get("/health/ready").status_code for _ in range(20)} == {200}
    assert broker_proxy.accepted == 1


def test_probes_arriving_while_the_checks_run_wait_for_their_results(database):
    slow_broker = TcpProxy(TEST_RABBITMQ_URL, latency=0.1).start()  # each check takes a few 0.1 s
    try:
        app = make_app(RABBITMQ_URL=slow_broker.url, HEALTH_CACHE_SECONDS=60)
        with ThreadPoolExecutor(max_workers=8) as probes:
            answers = probes.map(lambda _: app.test_client().get("/health/ready").status_code, range(8))
            assert set(answers) == {200}
        assert slow_broker.accepted == 1
    finally:
        slow_broker.stop()


def test_without_the_cache_every_probe_checks_again(database, broker_proxy):
    client = make_app(RABBITMQ_URL=broker_proxy.start().url, HEALTH_CACHE_SECONDS=0).test_client()
    assert {client.get("/health/ready").status_code for _ in range(3)} == {200}
    assert broker_proxy.accepted == 3


def test_the_cache_is_two_seconds_by_default(database):
    assert make_app().config["HEALTH_CACHE_SECONDS"] == 2


def test_a_failure_is_reused_too_until_the_cache_time_is_over(database, broker_proxy):
    client = make_app(RABBITMQ_URL=broker_proxy.url, HEALTH_CACHE_SECONDS=0.5).test_client()
    assert client.get("/health/ready").status_code == 503  # the proxy is closed: RabbitMQ is down
    broker_proxy.start()
    assert client.get("/health/ready").status_code == 503  # the cached failure
    assert broker_proxy.accepted == 0
    wait_for(lambda: client.get("/health/ready").status_code == 200, message="the broker seen back")
