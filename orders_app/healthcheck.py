"""Container health checks, one per kind of process (exit status 0 = healthy):

python -m orders_app.healthcheck url URL            web, rq-dashboard: URL answers 2xx (with the
                                                    dashboard's RQ_DASHBOARD_USERNAME/_PASSWORD if set)
python -m orders_app.healthcheck file PATH SECONDS  relay, consumer: heartbeat file fresh
python -m orders_app.healthcheck rq-worker          worker: registered in Redis, and PostgreSQL answers
python -m orders_app.healthcheck process            the one of these that fits the container's main
                                                    process (PID 1): the image's HEALTHCHECK

The checks that need the service's settings read them as the process they check does
(``load_standalone_config``: ``.env``, ``FLASK_*``) and probe with ``orders_app.probes``. They
import those when they run: ``url`` and ``file`` need only the standard library, and a check runs
every few seconds in every container.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Config

TIMEOUT_SECONDS = 3
HEARTBEAT_MAX_AGE = 60  # the loops touch the heartbeat at least every 30 s, outages included


def url_answers(url: str) -> bool:
    request = urllib.request.Request(url)
    username, password = os.environ.get("RQ_DASHBOARD_USERNAME"), os.environ.get("RQ_DASHBOARD_PASSWORD")
    if username and password:  # the dashboard's login, in its own container's environment
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {credentials}")
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        status: int = response.status  # urlopen's answer is typed Any
        return 200 <= status < 300


def file_is_fresh(path: str, max_age: float) -> bool:
    return time.time() - os.path.getmtime(path) <= max_age


def service_config() -> Config:
    """The service's configuration, loaded as its processes load it."""
    from orders_app.config import load_standalone_config

    return load_standalone_config()


def rq_worker_can_work() -> bool:
    """A worker of this host (container) is registered (its registration expires without
    heartbeats), and PostgreSQL answers: without it the worker cannot do its job."""
    from rq import Worker

    from orders_app import probes

    config = service_config()
    connection = probes.redis_connection(config, TIMEOUT_SECONDS)
    if not any(worker.hostname == socket.gethostname() for worker in Worker.all(connection=connection)):
        return False
    probes.check_postgresql(config, TIMEOUT_SECONDS)
    return True


def process_check(command: Sequence[str]) -> Callable[[], bool]:
    """The check (a callable) for a container whose main process runs ``command`` (its argv)."""
    programs = {os.path.basename(word) for word in command}
    if "gunicorn" in programs:
        port = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000").rsplit(":", 1)[1]
        return lambda: url_answers(f"http://127.0.0.1:{port}/health")
    if "rq-dashboard" in programs:
        port = command[command.index("--port") + 1] if "--port" in command else "9181"
        return lambda: url_answers(f"http://127.0.0.1:{port}/")
    if "worker" in programs:
        return rq_worker_can_work
    if programs & {"relay", "consumer"}:
        return lambda: file_is_fresh(service_config()["HEARTBEAT_FILE"], HEARTBEAT_MAX_AGE)
    return lambda: True  # a one-shot command (migrate): its exit status tells


def main_process_command() -> list[str]:
    with open("/proc/1/cmdline", "rb") as cmdline:
        return cmdline.read().decode().split("\0")[:-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orders_app.healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    checks = parser.add_subparsers(dest="check", required=True)
    checks.add_parser("url").add_argument("url")
    file_check = checks.add_parser("file")
    file_check.add_argument("path")
    file_check.add_argument("max_age", type=float)
    checks.add_parser("rq-worker")
    checks.add_parser("process")
    args = parser.parse_args(argv)
    try:
        if args.check == "url":
            healthy = url_answers(args.url)
        elif args.check == "file":
            healthy = file_is_fresh(args.path, args.max_age)
        elif args.check == "rq-worker":
            healthy = rq_worker_can_work()
        else:
            healthy = process_check(main_process_command())()
    except Exception as error:  # any failure to check means "unhealthy"
        print(f"unhealthy: {type(error).__name__}: {error}", file=sys.stderr)  # noqa: T201  # the check's answer
        return 1
    print("healthy" if healthy else "unhealthy")  # noqa: T201  # the check's answer
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
