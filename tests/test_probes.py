"""orders_app.probes: readiness, ``flask prestart`` and the container health check probe a
dependency the same way."""

import time

from orders_app.healthcheck import main as healthcheck

from support.network import silent_server
from support.settings import TEST_DATABASE_URL, TEST_SECRET, make_app


def test_a_hanging_redis_is_reported_alike_by_readiness_prestart_and_the_health_check(
    database, monkeypatch, caplog, capsys
):
    with silent_server() as port:
        url = f"redis://127.0.0.1:{port}/0"
        hang = f"Timeout reading from 127.0.0.1:{port}"
        # Clients of the app wait REDIS_SOCKET_TIMEOUT; a probe waits its own timeout.
        app = make_app(REDIS_URL=url, REDIS_SOCKET_TIMEOUT=10, HEALTH_CHECK_TIMEOUT=0.5)
        started = time.monotonic()
        ready = app.test_client().get("/health/ready")
        prestart = app.test_cli_runner().invoke(args=["prestart"])
        readiness_and_prestart = time.monotonic() - started

        for name, value in {
            "REDIS_URL": url,
            "FLASK_REDIS_SOCKET_TIMEOUT": "10",
            "DATABASE_URL": TEST_DATABASE_URL,
            "JWT_SECRET_KEY": TEST_SECRET,
        }.items():
            monkeypatch.setenv(name, value)
        started = time.monotonic()
        health = healthcheck(["rq-worker"])  # its probes wait 3 s
        health_check = time.monotonic() - started

    assert (ready.status_code, ready.json["checks"]["redis"]) == (503, "failing")
    assert f"Readiness check redis failed: TimeoutError: {hang}" in caplog.text
    assert prestart.exit_code == 1
    assert f"Redis is not reachable at {url} ({hang})" in prestart.output
    assert readiness_and_prestart < 3
    assert health == 1
    assert f"unhealthy: TimeoutError: {hang}" in capsys.readouterr().err
    assert health_check < 6
