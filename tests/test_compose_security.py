"""docker-compose.yml: passwords required, one least-privileged user per process in each server,
locked-down app containers holding only their own variables, ports that are settings, pinned
images, servers that keep their data. tests/test_compose_stack.py checks the same in the running
stack; here a real awk fills in the templates and a real redis-server loads the ACL users.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from redis import Redis
from redis.exceptions import NoPermissionError
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from support.dashboard import LOGIN, status_of
from support.network import free_port
from support.polling import wait_for
from support.settings import ROOT

with open(os.path.join(ROOT, "docker-compose.yml")) as compose_file:
    TEXT = compose_file.read()
SERVICES = yaml.safe_load(TEXT)["services"]
APP_SERVICES = [name for name, service in SERVICES.items() if "build" in service]
PASSWORDS = {
    "POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD", "RABBITMQ_PASSWORD", "RABBITMQ_ADMIN_PASSWORD",
    "REDIS_PASSWORD", "REDIS_SERVICE_PASSWORD", "REDIS_WORKER_PASSWORD", "REDIS_DASHBOARD_PASSWORD",
    "RQ_DASHBOARD_PASSWORD", "JWT_SECRET_KEY",
}  # fmt: skip
REDIS_SERVER = shutil.which("redis-server")


def required(variable):
    """Compose's ``${VAR:?message}``: no default, it refuses to start when VAR is unset."""
    return re.compile(rf"\$\{{{variable}:\?[^}}]+\}}")


def secrets_of(service):
    """The secret settings (.env names) that reach a service's containers."""
    text = yaml.safe_dump(SERVICES[service].get("environment", {}))
    return {name for name in PASSWORDS if re.search(rf"\$\{{{name}[:}}]", text)}


def test_no_password_has_a_default():
    assert not re.search(r"PASSWORD:-", TEXT)
    for variable in PASSWORDS:
        assert required(variable).search(TEXT), variable


def test_each_container_gets_only_the_secrets_it_needs():
    service = {"POSTGRES_APP_PASSWORD", "REDIS_SERVICE_PASSWORD", "RABBITMQ_PASSWORD", "JWT_SECRET_KEY"}
    assert {name: secrets_of(name) for name in SERVICES} == {
        "postgres": {"POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD"},
        "redis": {
            "REDIS_PASSWORD",
            "REDIS_SERVICE_PASSWORD",
            "REDIS_WORKER_PASSWORD",
            "REDIS_DASHBOARD_PASSWORD",
        },
        "rabbitmq": {"RABBITMQ_PASSWORD", "RABBITMQ_ADMIN_PASSWORD"},
        # the owner's password for the migrations; the dashboard's, to refuse an example value
        "migrate": service - {"POSTGRES_APP_PASSWORD"} | {"POSTGRES_PASSWORD", "RQ_DASHBOARD_PASSWORD"},
        "web": service,
        "relay": service,
        "consumer": {"REDIS_SERVICE_PASSWORD", "RABBITMQ_PASSWORD", "JWT_SECRET_KEY"},  # no database
        "worker": {"POSTGRES_APP_PASSWORD", "REDIS_WORKER_PASSWORD", "JWT_SECRET_KEY"},
        "rq-dashboard": {"REDIS_DASHBOARD_PASSWORD", "RQ_DASHBOARD_PASSWORD"},
        "proxy": set(),
        "prometheus": set(),
        "jaeger": set(),  # the optional tracing profile
    }
    assert not [name for name, service in SERVICES.items() if "env_file" in service]  # not all of .env


def test_app_containers_are_locked_down():
    for name in APP_SERVICES:
        service = SERVICES[name]
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["mem_limit"] and service["cpus"], name
    assert set(APP_SERVICES) == {"migrate", "web", "relay", "consumer", "worker", "rq-dashboard"}


def test_every_published_port_is_a_setting_with_its_usual_default():
    published = {name: service["ports"] for name, service in SERVICES.items() if "ports" in service}
    assert published == {
        "proxy": ["${PROXY_PORT:-8000}:8000"],
        "rabbitmq": ["${MANAGEMENT_BIND_ADDRESS:-127.0.0.1}:${RABBITMQ_MANAGEMENT_PORT:-15672}:15672"],
        "rq-dashboard": ["${MANAGEMENT_BIND_ADDRESS:-127.0.0.1}:${RQ_DASHBOARD_PORT:-9181}:9181"],
        "prometheus": ["${MANAGEMENT_BIND_ADDRESS:-127.0.0.1}:${PROMETHEUS_PORT:-9090}:9090"],
        "jaeger": ["${MANAGEMENT_BIND_ADDRESS:-127.0.0.1}:${JAEGER_UI_PORT:-16686}:16686"],
    }


def test_third_party_images_are_pinned_to_a_release():
    # The entrypoint tested is the one users get (redis:7's changed how it hands over a config file).
    for name, service in SERVICES.items():
        if name not in APP_SERVICES:
            release = r"\d+\.\d+" if name == "postgres" else r"\d+\.\d+\.\d+"  # PostgreSQL: major.minor
            assert re.fullmatch(rf"[\w/.-]+:v?{release}(-[\w.-]+)?", service["image"]), name


def test_rabbitmq_keeps_its_node_and_serves_before_it_is_healthy():
    rabbitmq = SERVICES["rabbitmq"]
    # The node, and so the database in the volume, is named after the host: fixed, not the container id.
    assert rabbitmq["environment"]["RABBITMQ_NODENAME"] == f"rabbit@{rabbitmq['hostname']}"
    assert rabbitmq["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "check_port_connectivity"]


def test_redis_reads_its_users_from_standard_input_not_from_a_file():
    # The official entrypoint's umask 0077 made a file written as root unreadable by redis.
    script = SERVICES["redis"]["command"][2]
    assert "redis-server --appendonly yes - <<EOF" in script and ">" not in script.split("<<EOF")[0]
    assert "./deploy/redis/users.acl:/etc/redis/users.acl:ro" in SERVICES["redis"]["volumes"]


def fill_in(template, **environment):
    return subprocess.run(
        ["awk", "-f", os.path.join(ROOT, "deploy", "fill-in.awk"), os.path.join(ROOT, template)],
        env={"PATH": os.environ["PATH"], **environment}, capture_output=True, text=True,
    )  # fmt: skip


REDIS_PASSWORDS = {
    "REDIS_PASSWORD": "admin-secret",
    "REDIS_SERVICE_PASSWORD": "service-secret",
    "REDIS_WORKER_PASSWORD": "worker-secret",
    "REDIS_DASHBOARD_PASSWORD": "dashboard-secret",
}


@pytest.mark.system
def test_the_templates_are_filled_in_from_the_environment():
    filled = fill_in("deploy/redis/users.acl", **REDIS_PASSWORDS)
    assert filled.returncode == 0
    assert "user rq-dashboard on >dashboard-secret ~rq:* " in filled.stdout and "${" not in filled.stdout
    missing = fill_in("deploy/redis/users.acl", REDIS_PASSWORD="admin-secret")
    assert missing.returncode == 1 and "REDIS_SERVICE_PASSWORD is not set" in missing.stderr
    example = fill_in("deploy/redis/users.acl", **REDIS_PASSWORDS | {"REDIS_WORKER_PASSWORD": "Change-Me"})
    assert example.returncode == 1 and "REDIS_WORKER_PASSWORD is the example value" in example.stderr
    definitions = fill_in("deploy/rabbitmq/definitions.json", ORDERS_PASSWORD="o", ADMIN_PASSWORD="a")
    assert '"name": "orders", "password": "o", "tags": []' in definitions.stdout
    rabbitmq = SERVICES["rabbitmq"]["environment"]
    assert rabbitmq["ORDERS_PASSWORD"].startswith("${RABBITMQ_PASSWORD:?")


@pytest.fixture
def acl_redis(tmp_path):
    """A private redis-server with the ACL users of deploy/redis/users.acl, given as compose does."""
    if not REDIS_SERVER:
        pytest.skip("redis-server is not installed")
    port = free_port()
    acl = fill_in("deploy/redis/users.acl", **REDIS_PASSWORDS).stdout
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path), "-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    server.stdin.write(acl)
    server.stdin.close()
    users = {"default": "REDIS_PASSWORD", "orders": "REDIS_SERVICE_PASSWORD",
             "worker": "REDIS_WORKER_PASSWORD", "rq-dashboard": "REDIS_DASHBOARD_PASSWORD"}  # fmt: skip
    urls = {
        user: f"redis://{user}:{REDIS_PASSWORDS[name]}@127.0.0.1:{port}/0" for user, name in users.items()
    }
    try:
        wait_for(lambda: _answers(urls["default"]), message="the private redis-server")
        yield urls
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url):
    try:
        return Redis.from_url(url).ping()
    except Exception:
        return False


@pytest.mark.system
def test_each_redis_user_can_do_its_job_and_no_more(acl_redis):
    # The service enqueues (RQ's enqueue is a Lua script), a worker runs the job.
    queue = Queue("orders", connection=Redis.from_url(acl_redis["orders"]), serializer=JSONSerializer)
    job = queue.enqueue("builtins.len", "abc")
    worker_redis = Redis.from_url(acl_redis["worker"])
    queues = [Queue("orders", connection=worker_redis, serializer=JSONSerializer)]
    assert SimpleWorker(queues, connection=worker_redis, serializer=JSONSerializer).work(burst=True)
    status = job.get_status(refresh=True).value
    assert status in ("finished", "failed")  # ran (or was refused by the worker), no NOPERM

    # rq-dashboard, run as compose runs it (its Redis URL from the environment), shows the queues,
    # jobs and workers with its own user...
    port = free_port()
    environment = {
        **os.environ,
        "RQ_DASHBOARD_REDIS_URL": acl_redis["rq-dashboard"],
        **LOGIN,
    }
    command = [os.path.join(os.path.dirname(sys.executable), "rq-dashboard"), "--json", "--bind", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    dashboard = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: status_of(url)[0], message="rq-dashboard")
        (shown,) = status_of(f"{url}/0/data/queues.json", tuple(LOGIN.values()))[1]["queues"]
        assert shown["name"] == "orders"
        for path in ("/0/data/workers.json", f"/0/data/jobs/orders/{status}/8/asc/1.json"):
            assert status_of(url + path, tuple(LOGIN.values()))[0] == 200, path
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=10)

    # ... which may not run Lua, flush, reconfigure the server, nor read the service's own keys.
    as_dashboard = Redis.from_url(acl_redis["rq-dashboard"])
    for command in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["EVAL", "return 1", "0"],
                    ["GET", "blocklist:x"], ["KEYS", "*"]):  # fmt: skip
        with pytest.raises(NoPermissionError):
            as_dashboard.execute_command(*command)
    for user in ("orders", "worker"):
        with pytest.raises(NoPermissionError):
            Redis.from_url(acl_redis[user]).flushall()
