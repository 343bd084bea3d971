"""The image (Dockerfile): multi-stage, and honest for each process it runs: no port announced for
all of them, a health check that fits whichever process is the container's (the default command's
included). tests/test_compose_stack.py builds and runs it; here, the choice of check per command.
"""

import os
import re
import threading

import pytest
from werkzeug.serving import make_server

from orders_app import healthcheck

from support.kubernetes import kubernetes_containers, kubernetes_manifests
from support.settings import ROOT, TEST_SECRET, make_app

with open(os.path.join(ROOT, "Dockerfile")) as dockerfile:
    DOCKERFILE = dockerfile.read()


def test_the_image_is_built_in_two_stages_and_announces_no_port():
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.MULTILINE)) == 2
    assert "COPY --from=dependencies /opt/venv /opt/venv" in DOCKERFILE
    assert "pip uninstall --yes --quiet pip setuptools" in DOCKERFILE and "--no-cache-dir" in DOCKERFILE
    assert not re.search(r"^EXPOSE ", DOCKERFILE, re.MULTILINE)
    assert 'CMD ["python", "-m", "orders_app.healthcheck", "process"]' in DOCKERFILE


@pytest.fixture
def web(database, monkeypatch):
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GUNICORN_BIND", f"0.0.0.0:{server.server_port}")
    yield server.server_port
    server.shutdown()


def test_the_web_gets_its_http_check_on_gunicorns_port(web, monkeypatch):
    command = ["/opt/venv/bin/python3", "/opt/venv/bin/gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    assert healthcheck.process_check(command)() is True
    monkeypatch.setenv("GUNICORN_BIND", "0.0.0.0:1")  # nothing listens there: unhealthy
    with pytest.raises(OSError):
        healthcheck.process_check(command)()


@pytest.mark.parametrize("process", ["relay", "consumer"])
def test_relay_and_consumer_get_the_heartbeat_check(process, tmp_path, monkeypatch):
    command = {"relay": ["flask", "--app", "orders_app", "relay"], "consumer": ["python", "-m", "consumer"]}
    monkeypatch.setenv("FLASK_HEARTBEAT_FILE", str(tmp_path / "heartbeat"))
    monkeypatch.setenv("JWT_SECRET_KEY", TEST_SECRET)  # the configuration is loaded as the process's
    check = healthcheck.process_check(command[process])
    with pytest.raises(FileNotFoundError):
        check()
    (tmp_path / "heartbeat").touch()
    assert check() is True


def test_the_worker_gets_the_rq_check_and_one_shots_none(monkeypatch):
    assert (
        healthcheck.process_check(["flask", "--app", "orders_app", "worker"])
        is healthcheck.rq_worker_can_work
    )
    assert healthcheck.process_check(["flask", "--app", "orders_app", "prestart"])() is True


def test_the_dashboard_gets_an_http_check_on_its_port(monkeypatch):
    seen = []
    monkeypatch.setattr(healthcheck, "url_answers", seen.append)
    healthcheck.process_check(["/opt/venv/bin/python3", "/opt/venv/bin/rq-dashboard", "--port", "9181"])()
    healthcheck.process_check(["rq-dashboard", "--json", "--port", "9999"])()
    assert seen == ["http://127.0.0.1:9181/", "http://127.0.0.1:9999/"]


def test_kubernetes_probes_stay_per_process():
    # Kubernetes does not run the image's HEALTHCHECK: each workload names its own probe.
    for workload, _, container in kubernetes_containers(kubernetes_manifests()):
        if workload != "Job/migrate":
            assert container.get("livenessProbe"), workload
