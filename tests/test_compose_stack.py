"""The compose stack for real: built, brought up, used, scaled, stopped, restarted (`make compose-test`).

Not part of `make test` (it needs Docker: Debian's docker.io and docker-compose, a running dockerd
and the images docker-compose.yml names). It runs under a project name and host ports of its own,
with a fresh env file made by `make .env`, so a developer's stack or `make run` is never touched,
and ends with `down -v`. The tests run in file order on one stack, each from where the last left it.
"""

import base64
import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import uuid

import pytest
import yaml

from support.network import free_port
from support.polling import wait_for
from support.settings import PASSWORD, ROOT

pytestmark = [
    pytest.mark.system,
    pytest.mark.compose,
    pytest.mark.skipif(os.environ.get("COMPOSE_TEST") != "1", reason="make compose-test runs it"),
]

HEALTHY_TIMEOUT = 180  # seconds for every service to be healthy
APP_SERVICES = ("migrate", "web", "relay", "consumer", "worker", "rq-dashboard")
PORTS = ("PROXY_PORT", "RABBITMQ_MANAGEMENT_PORT", "RQ_DASHBOARD_PORT", "PROMETHEUS_PORT")
MEASURED = {}  # printed at the end: what docs/deployment.md states ("Measured on this machine")


def run(*command, check=True, timeout=300, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


class Stack:
    def __init__(self, env_file, settings):
        self.project = f"orders-compose-test-{os.getpid()}"
        self.env_file, self.settings = env_file, settings

    def compose(self, *args, **kwargs):
        return run("docker-compose", "-p", self.project, "--env-file", self.env_file,
                   "-f", os.path.join(ROOT, "docker-compose.yml"), *args, cwd=ROOT, **kwargs)  # fmt: skip

    def containers(self, service, *, running=True):
        filters = [f"label=com.docker.compose.project={self.project}",
                   f"label=com.docker.compose.service={service}"]  # fmt: skip
        command = ["docker", "ps", "-q", *(["-a"] if not running else [])]
        for expression in filters:
            command += ["--filter", expression]
        return run(*command).stdout.split()

    def inspect(self, container):
        return json.loads(run("docker", "inspect", container).stdout)[0]

    def services(self):
        """The stack's services; those of optional profiles (tracing) are not started."""
        services = yaml.safe_load(self.compose("config").stdout)["services"]
        return [name for name, service in services.items() if "profiles" not in service]

    def not_healthy(self, services):
        """The services some container of which is not (yet) healthy; migrate must have exited 0."""
        waiting = []
        for service in services:
            containers = [self.inspect(c) for c in self.containers(service, running=service != "migrate")]
            if service == "migrate":
                healthy = containers and all(not c["State"]["Running"] and c["State"]["ExitCode"] == 0
                                             for c in containers)  # fmt: skip
            else:
                healthy = containers and all(c["State"].get("Health", {}).get("Status") == "healthy"
                                             for c in containers)  # fmt: skip
            if not healthy:
                waiting.append(service)
        return waiting

    def wait_healthy(self, services=None):
        """Wait until every service is healthy; print the logs of those that are not, at the deadline."""
        services = services or self.services()
        started = time.monotonic()
        deadline = started + HEALTHY_TIMEOUT
        while waiting := self.not_healthy(services):
            if time.monotonic() > deadline:
                for service in waiting:
                    print(f"----- {service} is not healthy; its logs:")
                    print(self.compose("logs", "--no-color", "--tail", "60", service, check=False).stdout)
                pytest.fail(f"not healthy after {HEALTHY_TIMEOUT} s: {', '.join(waiting)}")
            time.sleep(1)
        return time.monotonic() - started

    def exec(self, service, *command, env=(), check=True):
        options = [f"-e{name}={value}" for name, value in env]
        return run("docker", "exec", *options, self.containers(service)[0], *command, check=check)

    def request(self, method, path, body=None, headers=None, port="PROXY_PORT", timeout=10):
        """``(status, headers, parsed JSON or text)`` of one request to a published port."""
        connection = http.client.HTTPConnection("127.0.0.1", int(self.settings[port]), timeout=timeout)
        try:
            if isinstance(body, dict):
                body, headers = json.dumps(body), {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            text = response.read().decode()
            is_json = response.headers.get("Content-Type", "").startswith("application/json")
            return response.status, response.headers, json.loads(text) if is_json else text
        finally:
            connection.close()

    def stop(self, container):
        """``docker stop`` with the container's own grace period: ``(seconds taken, exit code, grace)``."""
        grace = self.inspect(container)["Config"].get("StopTimeout") or 10
        started = time.monotonic()
        run("docker", "stop", container, timeout=grace + 30)
        return time.monotonic() - started, self.inspect(container)["State"]["ExitCode"], grace


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is not installed (.ci/run installs it)")
    directory = tmp_path_factory.mktemp("compose")
    shutil.copy(os.path.join(ROOT, ".env.example"), directory)
    run("make", "-s", "-f", os.path.join(ROOT, "Makefile"), f"VENV={ROOT}/.venv", ".env", cwd=directory)
    settings = {name: str(free_port()) for name in PORTS} | {"PROCESSING_DELAY_SECONDS": "1"}
    with open(directory / ".env", "a") as env_file:
        env_file.writelines(f"{name}={value}\n" for name, value in settings.items())
    with open(directory / ".env") as env_file:
        settings |= dict(line.strip().split("=", 1) for line in env_file if line[:1].isalpha())
    stack = Stack(str(directory / ".env"), settings)
    started = time.monotonic()
    stack.compose("build", timeout=900)
    MEASURED["build (s)"] = round(time.monotonic() - started)
    try:
        started = time.monotonic()
        stack.compose("up", "-d", timeout=600)
        stack.wait_healthy()
        MEASURED["up -d to every service healthy (s)"] = round(time.monotonic() - started)
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)
        print("\nmeasured:", json.dumps(MEASURED))


@pytest.fixture(scope="module")
def customer(stack):
    """The first steps of the API by example (README, docs/api.md) through the proxy: register, log in."""
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    status, _, _ = stack.request("POST", "/register/", {"email": email, "password": PASSWORD})
    assert status == 201
    body = f"username={email}&password={PASSWORD.replace(' ', '+')}"
    status, _, tokens = stack.request(
        "POST", "/token", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, tokens
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def place_order(stack, customer):
    items = [
        {"name": "Bread", "quantity": 2, "price": 10.5},
        {"name": "Butter", "quantity": 1, "price": "5.00"},
    ]
    headers = {**customer, "Idempotency-Key": uuid.uuid4().hex}
    status, headers, order = stack.request("POST", "/orders/", {"items": items}, headers)
    assert status == 201, order
    assert headers["Location"] == f"/orders/{order['id']}/"
    return order


def processed(stack, customer, order_id):
    status, _, order = stack.request("GET", f"/orders/{order_id}/", headers=customer)
    assert status == 200, order
    return order if order["processed_at"] else None


def test_the_image_is_small_and_honest_for_each_process(stack):
    image = json.loads(run("docker", "image", "inspect", "orders-service").stdout)[0]
    base = json.loads(run("docker", "image", "inspect", "python:3.11-slim-bookworm").stdout)[0]
    MEASURED["image (MB)"] = round(image["Size"] / 1e6)
    MEASURED["image over its base (MB)"] = round((image["Size"] - base["Size"]) / 1e6)
    assert image["Size"] - base["Size"] < 150e6
    # No build tool or cache in the final stage, no port announced for every process.
    run("docker", "run", "--rm", "--entrypoint", "sh", "orders-service", "-c",
        "! test -e /opt/venv/bin/pip && ! test -d /root/.cache/pip && ! command -v gcc")  # fmt: skip
    assert not image["Config"].get("ExposedPorts")
    assert image["Config"]["Healthcheck"]["Test"][-1] == "process"
    # Every process's container is healthy by the image's check (above), and the web starts clean:
    # no ERROR (gunicorn's control socket once wanted a home directory that the image's user lacks).
    logs = stack.compose("logs", "--no-color", "web").stdout
    assert '"level":"ERROR"' not in logs.replace(" ", "") and "Control server error" not in logs


def test_the_readme_flow_through_the_proxy_to_a_processed_order(stack, customer):
    status, _, me = stack.request("GET", "/users/me", headers=customer)
    assert status == 200 and me["email"].startswith("ada-")
    status, _, ready = stack.request("GET", "/health/ready")
    assert (status, ready["status"]) == (200, "ok")
    order = place_order(stack, customer)
    assert order["status"] == "PENDING" and order["total_price"] == "26.00"
    done = wait_for(lambda: processed(stack, customer, order["id"]), timeout=60, interval=0.5,
                    message="the order processed by a worker")  # fmt: skip
    assert done["processed_at"] >= order["created_at"]


def test_metrics_are_not_routed_through_the_proxy_but_scraped_directly(stack):
    for path in ("/metrics", "/metrics/", "//metrics", "/%6detrics", "/metrics?x=1"):
        status, _, body = stack.request("GET", path)
        assert status == 404 and body["code"] == 404, path
    scrape = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read())"
    assert "http_requests_total" in stack.exec("web", "python", "-c", scrape).stdout


def test_least_privilege_holds(stack):
    settings = stack.settings
    for service in APP_SERVICES:
        for container in stack.containers(service, running=service != "migrate"):
            host = stack.inspect(container)["HostConfig"]
            assert host["ReadonlyRootfs"] is True, service
            assert host["CapDrop"] == ["ALL"], service
            assert host["SecurityOpt"] == ["no-new-privileges:true"], service
            assert host["Memory"] > 0 and host["NanoCpus"] > 0, service
    assert stack.exec("web", "touch", "/app/x", check=False).returncode != 0  # read-only
    # Each container holds only its own secrets: the web none of the owner's or the admins'.
    web_environment = stack.exec("web", "env").stdout
    for name in ("POSTGRES_PASSWORD", "RABBITMQ_ADMIN_PASSWORD", "REDIS_PASSWORD", "REDIS_WORKER_PASSWORD",
                 "REDIS_DASHBOARD_PASSWORD", "RQ_DASHBOARD_PASSWORD"):  # fmt: skip
        assert settings[name] not in web_environment, name
    assert settings["JWT_SECRET_KEY"] not in stack.exec("rq-dashboard", "env").stdout

    # PostgreSQL: the service's role reads and writes, owns and creates nothing.
    def as_app_role(sql):
        login = ["psql", "-h", "127.0.0.1", "-U", "orders_app", "-d", "orders", "-Atc"]
        password = [("PGPASSWORD", settings["POSTGRES_APP_PASSWORD"])]
        return stack.exec("postgres", *login, sql, env=password, check=False)

    assert int(as_app_role("SELECT count(*) FROM orders").stdout) >= 1
    assert "must be owner of table orders" in as_app_role("DROP TABLE orders").stderr
    assert "permission denied" in as_app_role("CREATE TABLE intruder (id int)").stderr
    assert "must be owner" in as_app_role("ALTER TABLE orders ADD COLUMN x int").stderr

    # Redis: rq-dashboard's user has no Lua, FLUSH*, CONFIG, nor keys other than RQ's.
    def as_redis_user(user, password_name, *command):
        return stack.exec("redis", "redis-cli", "--no-auth-warning", "--user", user, *command,
                          env=[("REDISCLI_AUTH", settings[password_name])]).stdout  # fmt: skip

    for command in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["EVAL", "return 1", "0"],
                    ["GET", "not-rq"]):  # fmt: skip
        assert "NOPERM" in as_redis_user("rq-dashboard", "REDIS_DASHBOARD_PASSWORD", *command), command
    for user, password_name in (("orders", "REDIS_SERVICE_PASSWORD"), ("worker", "REDIS_WORKER_PASSWORD")):
        assert "NOPERM" in as_redis_user(user, password_name, "FLUSHALL")
        assert "NOPERM" in as_redis_user(user, password_name, "CONFIG", "GET", "maxmemory")
    # ... and the dashboard still shows the queue, its finished job and the worker.
    login = basic_auth(settings["RQ_DASHBOARD_USERNAME"], settings["RQ_DASHBOARD_PASSWORD"])

    def dashboard(path):
        status, _, body = stack.request("GET", path, headers=login, port="RQ_DASHBOARD_PORT")
        assert status == 200, body
        return body

    (queue,) = dashboard("/0/data/queues.json")["queues"]
    assert queue["name"] == "orders" and queue["finished_job_registry_count"] >= 1
    assert "process_order" in dashboard("/0/data/jobs/orders/finished/8/asc/1.json")["jobs"][0]["description"]
    assert len(dashboard("/0/data/workers.json")["workers"]) == 1

    # RabbitMQ: the service's user is no administrator and cannot use the management API.
    def management(user, password):
        headers = basic_auth(user, password)
        return stack.request("GET", "/api/overview", headers=headers, port="RABBITMQ_MANAGEMENT_PORT")[0]

    assert management("orders", settings["RABBITMQ_PASSWORD"]) == 401
    assert management("admin", settings["RABBITMQ_ADMIN_PASSWORD"]) == 200
    users = stack.exec("rabbitmq", "rabbitmqctl", "-q", "list_users").stdout
    assert "orders\t[]" in users and "guest" not in users


def basic_auth(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def web_replica_addresses(stack):
    return {
        network["IPAddress"]
        for container in stack.containers("web")
        for network in stack.inspect(container)["NetworkSettings"]["Networks"].values()
    }


def prometheus_targets(stack):
    status, _, targets = stack.request("GET", "/api/v1/targets", port="PROMETHEUS_PORT")
    assert status == 200
    return [(target["labels"]["job"], target["health"]) for target in targets["data"]["activeTargets"]]


def test_scaled_web_and_workers_all_serve_and_are_scraped(stack):
    started = time.monotonic()
    stack.compose("up", "-d", "--no-recreate", "--scale", "web=3", "--scale", "worker=2")
    stack.wait_healthy()
    MEASURED["scale web=3 worker=2 to healthy (s)"] = round(time.monotonic() - started)
    addresses = web_replica_addresses(stack)
    assert len(addresses) == 3

    def answered_by_every_replica():
        for _ in range(12):
            assert stack.request("GET", "/health")[0] == 200
        log = stack.compose("logs", "--no-color", "proxy").stdout
        upstreams = {
            line.split('"upstream": "')[1].split(":")[0]
            for line in log.splitlines()
            if '"upstream": "' in line
        }
        return addresses <= upstreams

    wait_for(answered_by_every_replica, timeout=30, interval=1, message="requests on every web replica")
    expected = sorted([("consumer", "up"), ("relay", "up")] + [("web", "up")] * 3 + [("worker", "up")] * 2)
    started = time.monotonic()
    wait_for(lambda: sorted(prometheus_targets(stack)) == expected, timeout=90, interval=2,
             message=f"Prometheus targets {expected}")  # fmt: skip
    MEASURED["scaled targets all up in Prometheus after (s)"] = round(time.monotonic() - started)


def test_a_web_replica_stops_under_a_steady_stream_of_requests(stack):
    results, stop = [], threading.Event()

    def stream():
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = stack.request("GET", "/health", timeout=10)[0]
            except OSError as error:
                status = repr(error)
            results.append((status, time.monotonic() - started))
            time.sleep(0.02)

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        seconds, exit_code, grace = stack.stop(stack.containers("web")[0])
        time.sleep(5)  # well past the resolver's 2 s: requests that met the stopped address included
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    MEASURED["web replica docker stop (s)"] = round(seconds, 1)
    assert exit_code == 0 and seconds < grace
    statuses = {status for status, _ in results}
    slowest = max(duration for _, duration in results)
    MEASURED["requests during the stop, slowest (s)"] = [len(results), round(slowest, 2)]
    assert statuses == {200}, statuses
    assert slowest < 2.0


def test_docker_stop_ends_each_process_cleanly(stack):
    for service in ("relay", "worker", "rq-dashboard"):
        seconds, exit_code, grace = stack.stop(stack.containers(service)[0])
        MEASURED[f"{service} docker stop (s)"] = round(seconds, 1)
        assert exit_code == 0, service
        assert seconds < grace, service
    for service in ("relay", "worker", "rq-dashboard"):
        run("docker", "start", *stack.containers(service, running=False))
    stack.wait_healthy(["relay", "worker", "rq-dashboard"])


def waiting_messages(stack):
    queues = stack.exec(
        "rabbitmq", "rabbitmqctl", "-q", "list_queues", "-p", "orders", "name", "messages"
    ).stdout
    return sum(int(line.split("\t")[1]) for line in queues.splitlines() if line.startswith("new_order"))


def test_down_then_up_keeps_the_orders_and_a_waiting_message(stack, customer):
    seconds, exit_code, grace = stack.stop(stack.containers("consumer")[0])
    assert exit_code == 0 and seconds < grace
    order = place_order(stack, customer)  # the relay publishes it; no consumer takes it
    wait_for(
        lambda: waiting_messages(stack) >= 1, timeout=30, interval=1, message="the event waiting in new_order"
    )

    stack.compose("down", timeout=300)
    started = time.monotonic()
    everything_but_the_consumer = [service for service in stack.services() if service != "consumer"]
    stack.compose("up", "-d", *everything_but_the_consumer)
    stack.wait_healthy(everything_but_the_consumer)
    MEASURED["up -d again to healthy, volumes kept (s)"] = round(time.monotonic() - started)

    assert waiting_messages(stack) >= 1  # RabbitMQ kept its database: the same node name
    assert stack.request("GET", f"/orders/{order['id']}/", headers=customer)[0] == 200  # kept, as the login
    stack.compose("up", "-d", "consumer")
    wait_for(lambda: processed(stack, customer, order["id"]), timeout=60, interval=0.5,
             message="the waiting order processed once a consumer is back")  # fmt: skip
    assert waiting_messages(stack) == 0
