"""`make run` itself, as a newcomer starts it: the exported environment wins over `.env`.

The repository is copied to a temporary directory (sharing this checkout's virtualenv) whose
`.env` points every service somewhere wrong. `make run` is started as its own process group with
the real settings exported, must serve and process an order on them, and must stop entirely on
SIGINT (Ctrl-C in its terminal) or SIGTERM, every process exiting 0.
"""

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from support.client import Stack
from support.network import closed_port_url, free_port
from support.polling import wait_for
from support.settings import (
    PASSWORD,
    ROOT,
    TEST_DATABASE_URL,
    TEST_EVENTS_NAMESPACE,
    TEST_RABBITMQ_URL,
    TEST_REDIS_URL,
)

pytestmark = pytest.mark.system

DATABASE_URL = make_url(TEST_DATABASE_URL).set(database=make_url(TEST_DATABASE_URL).database + "_make_run")
WRONG_DATABASE = make_url(TEST_DATABASE_URL).database + "_from_dotenv"
HOSTILE_DOTENV = f"""\
DATABASE_URL=postgresql://postgres@127.0.0.1:5432/{WRONG_DATABASE}
REDIS_URL={closed_port_url("redis", "/0")}
RABBITMQ_URL={closed_port_url("amqp", "/%2F")}
JWT_SECRET_KEY=dotenv-secret-that-is-long-enough-0123456789abcdef
PROCESSING_DELAY_SECONDS=30
"""


# The Procfile's processes that stop gracefully on SIGTERM: not rq-dashboard, a third-party server
# that leaves SIGTERM to its default action (the runner reports it killed, rc=-15).
GRACEFUL = [line.partition(":")[0] for line in Path(ROOT, "Procfile").read_text().splitlines()]
GRACEFUL.remove("dashboard")


def drop_databases(*names):
    """Drop the databases; return which of them existed."""
    admin = create_engine(DATABASE_URL.set(database="postgres"), isolation_level="AUTOCOMMIT")
    existed = []
    with admin.connect() as connection:
        for name in names:
            query = text("SELECT 1 FROM pg_database WHERE datname = :name")
            existed.append(bool(connection.scalar(query, {"name": name})))
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    return existed


@pytest.fixture
def checkout(tmp_path):
    """A copy of the repository's files, its virtualenv shared, its `.env` hostile."""
    copy = tmp_path / "checkout"
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]  # not .env, not .venv
    tracked = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if os.path.exists(os.path.join(ROOT, name)):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), copy / name)  # mtimes kept: no reinstall
    (copy / ".env").write_text(HOSTILE_DOTENV)
    return copy


def descendants(pid):
    """Every live process below ``pid``."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


DASHBOARD_LOGIN = {
    "RQ_DASHBOARD_USERNAME": "operator",
    "RQ_DASHBOARD_PASSWORD": "a-dashboard-password-for-tests",
}
METRICS_PORTS = [f"{name}_METRICS_PORT" for name in ("RELAY", "CONSUMER", "WORKER")]


def listening_addresses(port):
    """The addresses TCP sockets listen on at ``port`` (IPv4 and IPv6), from /proc/net."""
    addresses = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc writes each 32-bit word in the host's byte order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                addresses.add(socket.inet_ntop(family, words if sys.byteorder == "little" else raw))
    return addresses


def command_line(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")


def dashboard_sees_the_exported_redis(port):
    """A queue made up here, in the exported Redis, is on the dashboard's list."""
    queue = Queue(
        f"make-run-{uuid.uuid4().hex}", connection=Redis.from_url(TEST_REDIS_URL), serializer=JSONSerializer
    )
    queue.enqueue("orders_app.jobs.process_order", "not-run")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/0/data/queues.json")
    credentials = base64.b64encode(":".join(DASHBOARD_LOGIN.values()).encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    with urllib.request.urlopen(request, timeout=5) as response:
        listed = [listed_queue["name"] for listed_queue in json.loads(response.read())["queues"]]
    assert queue.name in listed


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_make_run_uses_the_exported_environment_over_dotenv(database, broker, checkout, tmp_path, signum):
    drop_databases(DATABASE_URL.database, WRONG_DATABASE)
    port = free_port()
    venv = Path(sys.executable).parent.parent
    environment = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL.render_as_string(hide_password=False),
        "REDIS_URL": TEST_REDIS_URL,
        "RABBITMQ_URL": TEST_RABBITMQ_URL,
        "PROCESSING_DELAY_SECONDS": "0",
        "FLASK_EVENTS_NAMESPACE": TEST_EVENTS_NAMESPACE,
        "FLASK_PASSWORD_HASH_TIME_COST": "1",
        "FLASK_PASSWORD_HASH_MEMORY_COST": "1024",
        "WEB_PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "RQ_DASHBOARD_PORT": str(free_port()),
        **DASHBOARD_LOGIN,
        **{f"{name}_METRICS_PORT": str(free_port()) for name in ("RELAY", "CONSUMER", "WORKER")},
    }
    for unset in (
        "PYTHON_DOTENV_DISABLED",
        "GUNICORN_BIND",
        "BIND_ADDRESS",
    ):  # make run's defaults, as users get them
        environment.pop(unset, None)
    listeners = [environment[name] for name in ("WEB_PORT", "RQ_DASHBOARD_PORT", *METRICS_PORTS)]
    log = tmp_path / "make-run.log"
    make = subprocess.Popen(
        ["make", "run", f"VENV={venv}"],
        cwd=checkout,
        env=environment,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as in a terminal
    )
    stack = Stack(f"http://127.0.0.1:{port}", {"make": log})
    processes = []
    try:

        def serving():
            assert make.poll() is None, f"make run exited:\n{log.read_text()}"
            return stack.ready()

        wait_for(serving, timeout=60, message="make run serving")
        wait_for(lambda: "Consuming queue" in log.read_text(), message="the consumer")
        processes = descendants(make.pid)
        # Each process listens on loopback only; rq-dashboard has its Redis URL from its
        # environment, not on a command line that ps shows anyone.
        wait_for(lambda: all(listening_addresses(int(port)) for port in listeners), message="the listeners")
        assert {port: listening_addresses(int(port)) for port in listeners} == dict.fromkeys(
            listeners, {"127.0.0.1"}
        )
        [dashboard] = [pid for pid in processes if b"rq-dashboard" in command_line(pid)]
        assert b"redis://" not in command_line(dashboard)
        dashboard_sees_the_exported_redis(environment["RQ_DASHBOARD_PORT"])
        # A lone request's line reaches the terminal by itself (the web writes at once when idle,
        # the runner re-prints at once): a buffered line would wait for more output, forever here.
        request_id = f"make-run-{signum.name}"
        assert stack.call("GET", "/health", headers={"X-Request-ID": request_id})[0] == 200
        wait_for(lambda: request_id in log.read_text(), timeout=15, message="the request's line")
        assert stack.call("POST", "/register/", {"email": "run@example.com", "password": PASSWORD})[0] == 201
        form = {"username": "run@example.com", "password": PASSWORD}
        status, tokens = stack.call("POST", "/token", form=form)
        assert status == 200
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        items = [{"name": "Tea", "quantity": 1, "price": "2.50"}]
        status, order = stack.call("POST", "/orders/", {"items": items}, headers=auth)
        assert status == 201
        wait_for(
            lambda: stack.call("GET", f"/orders/{order['id']}/", headers=auth)[1]["processed_at"],
            timeout=20,
            message="the order processed",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):  # unless it already ended
            os.killpg(make.pid, signum)
        make.wait(timeout=40)
    assert len(processes) >= 6, "the runner and the five processes of the Procfile, at least"
    wait_for(
        lambda: not any(alive(pid) for pid in processes),
        timeout=30,
        message=f"every process to exit; the output:\n{log.read_text()[-3000:]}",
    )
    # Each handled the runner's SIGTERM and exited 0 (the Procfile's exec: no shell in between to be killed).
    output = log.read_text()
    exits = dict(re.findall(r"(\w+)\.1 stopped \(rc=(-?\d+)\)", output))
    assert {name: exits.get(name) for name in GRACEFUL} == dict.fromkeys(GRACEFUL, "0"), output[-3000:]
    assert "Worker exiting" in output  # the web worker's last line, logged after its event loop stopped
    # make run created and migrated the exported database, and never touched the one in .env.
    assert drop_databases(DATABASE_URL.database, WRONG_DATABASE) == [True, False]


def test_make_env_writes_a_file_only_its_owner_reads(tmp_path):
    for name in ("Makefile", ".env.example"):
        shutil.copy2(os.path.join(ROOT, name), tmp_path / name)
    subprocess.run(
        ["make", ".env"], cwd=tmp_path, check=True, capture_output=True, preexec_fn=lambda: os.umask(0o022)
    )
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    assert "JWT_SECRET_KEY=change-me" not in (tmp_path / ".env").read_text()
