"""rq-dashboard as the stack runs it: a login from the environment, JSON jobs, failed jobs shown."""

import os
import subprocess
import sys
import uuid

import pytest
from redis import Redis

from orders_app.healthcheck import main as healthcheck
from orders_app.job_queue import enqueue_process_order, job_id

from support.dashboard import LOGIN, status_of
from support.jobs import run_jobs
from support.network import free_port
from support.polling import wait_for
from support.settings import TEST_REDIS_URL, make_app

pytestmark = pytest.mark.system


@pytest.fixture
def dashboard(database):
    """rq-dashboard with the options of the Procfile and the compose file, on a port of its own."""
    port = free_port()
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "rq-dashboard"), "--json", "--bind", "127.0.0.1",
         "--port", str(port)],
        env={**os.environ, **LOGIN, "RQ_DASHBOARD_REDIS_URL": TEST_REDIS_URL},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: status_of(url)[0], message="rq-dashboard")
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_the_dashboard_needs_its_login(dashboard):
    assert status_of(f"{dashboard}/")[0] == 401
    assert status_of(f"{dashboard}/", ("operator", "wrong"))[0] == 401
    assert status_of(f"{dashboard}/", tuple(LOGIN.values()))[0] == 200


def test_failed_jobs_are_shown_with_their_json_arguments_and_traceback(dashboard):
    rq_redis = Redis.from_url(TEST_REDIS_URL)
    app = make_app(JOB_RETRY_INTERVALS=[0, 0, 0])
    order_id = uuid.uuid4()
    enqueue_process_order(app.config, rq_redis, order_id, "req-dashboard")
    run_jobs(app, rq_redis)
    status, page = status_of(f"{dashboard}/0/data/jobs/orders/failed/8/asc/1.json", tuple(LOGIN.values()))
    assert status == 200
    [failed] = page["jobs"]
    assert failed["id"] == job_id(order_id)
    assert str(order_id) in failed["description"]
    assert "does not exist" in failed["exc_info"]


def test_the_container_health_check_logs_in(dashboard, monkeypatch):
    assert healthcheck(["url", f"{dashboard}/"]) == 1
    for name, value in LOGIN.items():
        monkeypatch.setenv(name, value)
    assert healthcheck(["url", f"{dashboard}/"]) == 0
