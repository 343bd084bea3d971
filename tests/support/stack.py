"""The stack's four processes (web, relay, consumer, worker) started as a user runs them, and a
user signed in over HTTP."""

import signal
from contextlib import contextmanager

from redis import Redis
from rq import Worker

from .client import Stack
from .commands import PROCESSES, start_process
from .network import free_port
from .polling import wait_for
from .settings import PASSWORD, TEST_REDIS_URL


@contextmanager
def running_stack(tmp_path, **settings):
    """The four processes on a free port, ready; stopped with SIGTERM after, each exiting with 0."""
    port = free_port()
    settings = {
        "FLASK_PASSWORD_HASH_TIME_COST": "1",
        "FLASK_PASSWORD_HASH_MEMORY_COST": "1024",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        **settings,
    }
    logs = {name: tmp_path / f"{name}.log" for name in PROCESSES}
    processes = {
        name: start_process(command, stdout=logs[name].open("w"), **settings)
        for name, command in PROCESSES.items()
    }
    stack = Stack(f"http://127.0.0.1:{port}", logs)
    try:
        wait_for(stack.ready, message="the web process")
        wait_for(lambda: "Relay publishing" in stack.log("relay"), message="the relay")
        wait_for(lambda: "Consuming queue" in stack.log("consumer"), message="the consumer")
        wait_for(lambda: Worker.all(connection=Redis.from_url(TEST_REDIS_URL)), message="the worker")
        yield stack
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        exit_codes = {name: process.wait(timeout=30) for name, process in processes.items()}
    assert exit_codes == dict.fromkeys(PROCESSES, 0), {name: stack.log(name)[-2000:] for name in PROCESSES}


def signed_in(stack, email):
    """Register ``email`` and log in: the Authorization header."""
    assert stack.call("POST", "/register/", {"email": email, "password": PASSWORD})[0] == 201
    status, tokens = stack.call("POST", "/token", form={"username": email, "password": PASSWORD})
    assert status == 200
    return {"Authorization": f"Bearer {tokens['access_token']}"}
