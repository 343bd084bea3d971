"""docker-compose.yml: passwords required, dashboards on loopback with a login, least environment."""

import os
import re

import pytest
import yaml

from helpers import ROOT

with open(os.path.join(ROOT, "docker-compose.yml")) as compose_file:
    TEXT = compose_file.read()
SERVICES = yaml.safe_load(TEXT)["services"]
APP_SERVICES = [name for name, service in SERVICES.items() if "env_file" in service]


def required(variable):
    """Compose's ``${VAR:?message}``: no default, it refuses to start when VAR is unset."""
    return re.compile(rf"\$\{{{variable}:\?[^}}]+\}}")


def test_no_password_has_a_default():
    assert not re.search(r"PASSWORD:-", TEXT)
    for variable in ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "REDIS_PASSWORD", "RQ_DASHBOARD_PASSWORD"):
        assert required(variable).search(TEXT), variable


@pytest.mark.parametrize("service, port", [("rabbitmq", 15672), ("rq-dashboard", 9181)])
def test_management_ports_are_published_on_loopback_by_default(service, port):
    assert SERVICES[service]["ports"] == [f"${{MANAGEMENT_BIND_ADDRESS:-127.0.0.1}}:{port}:{port}"]


def test_redis_requires_its_password_and_every_client_sends_it():
    redis = SERVICES["redis"]
    assert "requirepass" in " ".join(redis["command"])
    assert required("REDIS_PASSWORD").fullmatch(redis["environment"]["REDIS_PASSWORD"])
    assert redis["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD}"  # its healthcheck
    for name in APP_SERVICES:
        assert SERVICES[name]["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD"), name
    assert SERVICES["rq-dashboard"]["environment"]["RQ_DASHBOARD_REDIS_URL"].startswith(
        "redis://:${REDIS_PASSWORD"
    )


def test_rq_dashboard_gets_only_its_own_settings_and_a_login():
    dashboard = SERVICES["rq-dashboard"]
    assert "env_file" not in dashboard
    assert set(dashboard["environment"]) == {
        "RQ_DASHBOARD_REDIS_URL",
        "RQ_DASHBOARD_USERNAME",
        "RQ_DASHBOARD_PASSWORD",
    }
    assert required("RQ_DASHBOARD_USERNAME").fullmatch(dashboard["environment"]["RQ_DASHBOARD_USERNAME"])
    assert "--json" in dashboard["command"]  # jobs are JSON, never pickles
    # It starts after migrate, which refuses example passwords (the dashboard's included).
    assert dashboard["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_only_the_services_own_processes_read_the_env_file():
    assert set(APP_SERVICES) == {"migrate", "web", "relay", "consumer", "worker"}
