"""Plain helpers and settings shared by the tests."""

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit

import jwt
import pika
import yaml
from sqlalchemy import func, select, text

from consumer.consumer import Consumer
from orders_app import create_app
from orders_app.config import load_standalone_config, psycopg2_url
from orders_app.extensions import db
from orders_app.lifecycle import GracefulStop
from orders_app.models import OutboxEvent

TEST_DATABASE_URL = psycopg2_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/orders_test")
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
# Each run of the suite may take names of its own, so that two checkouts can test side by side.
TEST_EVENTS_NAMESPACE = os.environ.get("TEST_EVENTS_NAMESPACE", "test.")
PASSWORD = "correct horse battery"


def free_port():
    """A local port where nothing listens (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_port_url(scheme, path=""):
    """A URL on a local port where nothing listens: a dependency that is down."""
    return f"{scheme}://127.0.0.1:{free_port()}{path}"


def app_config(**overrides):
    """The tests' configuration overrides: their own databases, broker names and cheap settings."""
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "RABBITMQ_URL": TEST_RABBITMQ_URL,
        "JWT_SECRET_KEY": TEST_SECRET,
        "HEALTH_CHECK_TIMEOUT": 1.0,
        "EVENTS_NAMESPACE": TEST_EVENTS_NAMESPACE,
        "PROCESSING_DELAY_SECONDS": 0,
        "RECONNECT_MAX_SECONDS": 1.0,
        # Cheap hashing keeps the suite fast; test_auth checks the production defaults.
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_MEMORY_COST": 1024,
    }
    config.update(overrides)
    return config


def make_app(**overrides):
    return create_app(app_config(**overrides))


def make_config(**overrides):
    """The tests' configuration for a process without an app (the consumer)."""
    return load_standalone_config(app_config(**overrides))


def register(client, email, password=PASSWORD):
    response = client.post("/register/", json={"email": email, "password": password})
    assert response.status_code == 201, response.json
    return response.json


def login(client, email, password=PASSWORD):
    response = client.post("/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.json
    return response.json


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELAY = [sys.executable, "-m", "flask", "--app", "orders_app", "relay"]
CONSUMER = [sys.executable, "-m", "consumer"]
WORKER = [sys.executable, "-m", "flask", "--app", "orders_app", "worker"]


def kubernetes_manifests():
    """deploy/k8s as ``kubectl kustomize`` renders it (requirements-dev.txt installs kubectl)."""
    kubectl = os.path.join(os.path.dirname(sys.executable), "kubectl")
    command = [kubectl, "kustomize", os.path.join(ROOT, "deploy", "k8s")]
    return list(
        yaml.safe_load_all(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    )


def kubernetes_containers(manifests):
    """``(workload, pod spec, container)`` for every container of the Deployments and Jobs."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "Job"):
            pod = manifest["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield f"{manifest['kind']}/{manifest['metadata']['name']}", pod, container


def process_env(**settings):
    """The environment of a real process of the service, on the tests' database, Redis db and names."""
    return {
        **os.environ,
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        "PYTHON_DOTENV_DISABLED": "1",
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "RABBITMQ_URL": TEST_RABBITMQ_URL,
        "JWT_SECRET_KEY": TEST_SECRET,
        "PROCESSING_DELAY_SECONDS": "0",
        "FLASK_EVENTS_NAMESPACE": TEST_EVENTS_NAMESPACE,
        **settings,
    }


def start_process(command, stdout=subprocess.DEVNULL, **settings):
    """A real process of the service, in a process group of its own (see ``kill_hard``)."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=process_env(**settings),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_hard(process):
    """SIGKILL a process and its children, as when its container or host dies: an RQ worker's
    scheduler is a child process that would otherwise live on, holding the scheduler's lock."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@contextmanager
def running(component, **overrides):
    """``component`` (a Relay or a Consumer) running in a thread: the relay in an app context of
    its own, the consumer, which has no app, with its configuration only.

    Stopped gracefully on exit, as SIGTERM would stop the real process.
    """
    stop = GracefulStop()
    if component is Consumer:
        consumer = Consumer(make_config(**overrides), stop)
        run = consumer.run
    else:
        app = make_app(**overrides)

        def run():
            with app.app_context():
                component(stop).run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.request()
        thread.join(timeout=10)
        assert not thread.is_alive(), f"{component.__name__} did not stop"


def forge_token(payload, key=TEST_SECRET, algorithm="HS256"):
    """A JWT signed (or, with ``algorithm="none"``, not signed) by whoever holds ``key``."""
    if algorithm == "none":
        segments = [{"alg": "none", "typ": "JWT"}, payload]
        encoded = [base64.urlsafe_b64encode(json.dumps(s).encode()).rstrip(b"=") for s in segments]
        return b".".join(encoded).decode() + "."
    return jwt.encode(payload, key, algorithm=algorithm)


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


@contextmanager
def silent_server():
    """A port that accepts connections and never answers: a dependency that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def place_order(client, headers, items=None, **extra_headers):
    body = {"items": items or [{"name": "Bread", "quantity": 2, "price": "10.50"}]}
    response = client.post("/orders/", json=body, headers={**headers, **extra_headers})
    assert response.status_code == 201, response.json
    return response.json


def wait_for(condition, timeout=15.0, interval=0.05, message="condition"):
    """Poll ``condition`` until it returns something truthy; return that, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout} s waiting for {message}")


class TcpProxy:
    """A local port forwarding to the server of ``url`` that a test can close, reset and open again.

    Closed, its port refuses connections and the open ones are cut: the service went away.
    ``reset()`` aborts the open connections with a TCP RST and keeps accepting new ones.
    With ``latency`` (seconds) every chunk sent to the service is held that long: a slow service.
    ``hold()`` keeps what clients send from reaching the service until ``release()``.
    ``url`` is the same URL, pointing at the proxy; ``accepted`` counts the connections made.
    """

    def __init__(self, url, latency=0.0):
        parts = urlsplit(url)
        self.target = (parts.hostname, parts.port)
        self.port = free_port()
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{self.port}")
        self.url = parts._replace(netloc=netloc).geturl()
        self.latency = latency
        self._flowing = threading.Event()
        self._flowing.set()
        self.accepted = 0
        self._server = None
        self._connections = []
        self._lock = threading.Lock()

    def start(self):
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        return self

    def stop(self):
        with self._lock:
            sockets, self._connections = [self._server, *self._connections], []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def reset(self):
        """Abort every open connection with a TCP RST (SO_LINGER 0); new ones are still accepted."""
        with self._lock:
            sockets, self._connections = self._connections, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)  # wakes the pump blocked on it; sends nothing
            sock.close()  # the last reference gone, the kernel answers the peer with a RST

    def hold(self):
        self._flowing.clear()

    def release(self):
        self._flowing.set()

    def _accept(self, server):
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._connections += [client, upstream]
                self.accepted += 1
            for source, sink, to_service in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, to_service), daemon=True).start()

    def _pump(self, source, sink, to_service):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if to_service:
                    time.sleep(self.latency)
                    self._flowing.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def drain(channel, queue):
    """Take every ready message off ``queue``: a list of ``(properties, body)``."""
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((properties, body))


def ready_count(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def event_for(order, request_id="req-consumer"):
    return {
        "event": "new_order",
        "event_id": str(uuid.uuid4()),
        "order_id": order["id"],
        "user_id": order["user_id"],
        "total_price": order["total_price"],
        "created_at": order["created_at"],
        "request_id": request_id,
    }


def publish(channel, topology, body):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    channel.basic_publish(
        topology.exchange,
        topology.routing_key,
        body,
        pika.BasicProperties(content_type="application/json", delivery_mode=2),
    )


def unpublished(app):
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )


def add_outbox_rows(app, count):
    """``count`` pending events, written in one statement (the relay does not read their payload)."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO outbox_events (id, event_type, payload) "
                "SELECT gen_random_uuid(), 'new_order', jsonb_build_object('order_id', n) "
                "FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        db.session.commit()
        return {str(i) for i in db.session.scalars(select(OutboxEvent.id))}
