"""Private PostgreSQL, Redis and RabbitMQ servers for the tests that restart, kill or pause one.

The shared servers on the usual ports serve everyone's tests and must never be restarted: a test
that takes a server down starts its own, on free ports in a temporary directory, and the fixture
kills it at teardown, pass or fail. PostgreSQL and RabbitMQ refuse to run as root: they run as
the system users of their packages (``postgres``, ``rabbitmq``), as the shared servers do.
"""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest
from flask_migrate import upgrade

from orders_app.config import psycopg2_url
from orders_app.database import create_database_if_missing
from orders_app.extensions import db

from .commands import kill_hard
from .network import free_port
from .polling import wait_for
from .settings import make_app

RABBITMQ_BIN = "/usr/lib/rabbitmq/bin"
RABBITMQ_HOME = "/var/lib/rabbitmq"  # the Erlang cookie the shared node and rabbitmqctl use


def listening(port):
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def private_directory(owner):
    """A temporary directory the system user ``owner`` owns (pytest's are private to root)."""
    path = tempfile.mkdtemp(prefix="orders-test-")
    shutil.chown(path, owner, owner)
    return path


def as_user(user, *command, **environment):
    return ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in environment.items()), *command]


class PrivateRedis:
    """A redis-server without persistence: ``kill()`` is a crash that loses everything."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = tempfile.mkdtemp(prefix="orders-test-redis-")
        self.process = None

    def start(self):
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", self.directory]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: listening(self.port), message=f"redis-server on port {self.port}")
        return self

    def kill(self):
        kill_hard(self.process)

    def close(self):
        if self.process.poll() is None:
            self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb, trust auth), with the service's database migrated."""

    def __init__(self):
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not versions:
            pytest.skip("PostgreSQL's server binaries are not installed")
        self.bin = os.path.dirname(versions[-1])
        self.port = free_port()
        self.directory = private_directory("postgres")
        self.data = os.path.join(self.directory, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/orders"

    def _pg(self, *arguments, check=True):
        command = as_user("postgres", *arguments)
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def start(self):
        if not os.path.exists(self.data):
            self._pg(f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync")
        self.pg_ctl("start")
        create_database_if_missing(psycopg2_url(self.url))
        app = make_app(SQLALCHEMY_DATABASE_URI=psycopg2_url(self.url))
        with app.app_context():
            upgrade()
            db.engine.dispose()
        return self

    def pg_ctl(self, action, mode="fast"):
        """``pg_ctl start|stop|restart`` (``-m fast`` terminates the sessions: 57P01, then 57P03
        for whoever connects while it shuts down or starts)."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = os.path.join(self.directory, "server.log")
        self._pg(f"{self.bin}/pg_ctl", action, "-D", self.data, "-m", mode, "-w", "-l", log, "-o", options)

    def close(self):
        self._pg(f"{self.bin}/pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (no plugins, its own ports and data) that a test may stop,
    start and kill; started as the shared node is, by the ``rabbitmq`` user with its cookie."""

    def __init__(self):
        if not os.path.exists(f"{RABBITMQ_BIN}/rabbitmq-server"):
            pytest.skip("RabbitMQ is not installed")
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"orders-test-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.directory = private_directory("rabbitmq")
        self.process = None

    def start(self):
        config, plugins = (
            os.path.join(self.directory, name) for name in ("rabbitmq.conf", "enabled_plugins")
        )
        for path, text in ((config, f"listeners.tcp.local = 127.0.0.1:{self.port}\n"), (plugins, "")):
            with open(path, "w") as file:
                file.write(text)
            shutil.chown(path, "rabbitmq", "rabbitmq")
        environment = {
            "HOME": RABBITMQ_HOME,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": self.port,
            "RABBITMQ_DIST_PORT": self.dist_port,
            "RABBITMQ_CONFIG_FILE": config,  # the system's names the shared node's port
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,  # none: no management port to clash
            "RABBITMQ_MNESIA_BASE": os.path.join(self.directory, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.directory, "log"),
        }
        self.process = subprocess.Popen(
            as_user("rabbitmq", f"{RABBITMQ_BIN}/rabbitmq-server", **environment),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: listening(self.port), timeout=90, interval=0.2, message=f"RabbitMQ node {self.node}")
        return self

    def ctl(self, *arguments):
        """``rabbitmqctl -n`` this node (``stop_app``, ``start_app``, ...)."""
        command = as_user(
            "rabbitmq", f"{RABBITMQ_BIN}/rabbitmqctl", "-n", self.node, *arguments, HOME=RABBITMQ_HOME
        )
        subprocess.run(command, capture_output=True, check=True, timeout=120)

    def kill(self):
        """SIGKILL the broker (the Erlang VM and its helpers; the shared epmd is not ours)."""
        kill_hard(self.process)

    def close(self):
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError):
                self.ctl("stop")
            with contextlib.suppress(ProcessLookupError):  # stopped meanwhile
                kill_hard(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def _closing(server):
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def private_redis():
    with _closing(PrivateRedis()) as server:
        yield server


@pytest.fixture
def private_postgres():
    with _closing(PrivatePostgres()) as server:
        yield server


@pytest.fixture
def private_rabbitmq():
    with _closing(PrivateRabbitMQ()) as server:
        yield server
