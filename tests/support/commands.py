"""The service's processes as a test starts them: their commands and environment, a hard kill,
and the relay or consumer running in a thread of the test."""

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

from consumer.consumer import Consumer
from orders_app.lifecycle import GracefulStop

from .settings import (
    ROOT,
    TEST_DATABASE_URL,
    TEST_EVENTS_NAMESPACE,
    TEST_RABBITMQ_URL,
    TEST_REDIS_URL,
    TEST_SECRET,
    make_app,
    make_config,
)

RELAY = [sys.executable, "-m", "flask", "--app", "orders_app", "relay"]
CONSUMER = [sys.executable, "-m", "consumer"]
WORKER = [sys.executable, "-m", "flask", "--app", "orders_app", "worker"]
WEB = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
PROCESSES = {"web": WEB, "relay": RELAY, "consumer": CONSUMER, "worker": WORKER}


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
