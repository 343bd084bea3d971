"""How the service's handler writes its lines (``orders_app.log``): each line one write, made as
it is logged; whole however many threads or processes share the output; and every line of a
stopping gunicorn worker written."""

import http.client
import io
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from orders_app.log import make_handler

from support.commands import start_process
from support.network import free_port
from support.polling import wait_for


class RecordedWrites(io.RawIOBase):
    """A stream's file that keeps each write made to it."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def writable(self):
        return True

    def write(self, data):
        self.writes.append(bytes(data))
        return len(data)


@pytest.fixture
def log(monkeypatch):
    """A logger of this test with the service's handler."""
    logger = logging.getLogger("orders_app.test_log_writes")
    monkeypatch.setattr(logger, "handlers", [make_handler("json")])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    return logger


class FirstWriteFails(RecordedWrites):
    """As when the pipe's reader is gone, once."""

    def write(self, data):
        if not hasattr(self, "failed"):
            self.failed = True
            raise BrokenPipeError
        return super().write(data)


@contextmanager
def stderr_writes(recorded=None):
    """The writes made to ``sys.stderr`` within the block."""
    recorded, saved = recorded or RecordedWrites(), sys.stderr
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(recorded), encoding="utf-8")
    try:
        yield recorded.writes
    finally:
        sys.stderr = saved


def messages(data):
    return [json.loads(line)["message"] for line in data.decode().splitlines()]


def test_each_line_is_one_write_made_as_it_is_logged(log):
    """A pipe takes a write of up to PIPE_BUF bytes whole: a line never interleaves with those of
    the other processes writing to it (gunicorn's master and workers)."""
    with stderr_writes() as writes:
        log.info("first")
        assert [messages(write) for write in writes] == [["first"]]
        padding = "x" * 300
        for number in range(10):
            log.info("line %d %s", number, padding)
        log.info("long %s", "y" * select.PIPE_BUF)
    assert [messages(write) for write in writes] == [
        ["first"],
        *([f"line {number} {padding}"] for number in range(10)),
        [f"long {'y' * select.PIPE_BUF}"],
    ]
    assert all(len(write) <= select.PIPE_BUF for write in writes[:-1])


def test_lines_logged_by_threads_at_once_are_each_one_whole_write(log, monkeypatch):
    """However often the interpreter switches between threads, none of their lines is lost,
    written twice or written in pieces."""
    monkeypatch.setattr(sys, "getswitchinterval", sys.getswitchinterval)  # restored after the test
    sys.setswitchinterval(1e-6)
    threads, lines = 4, 5000
    with stderr_writes() as writes:
        logging_threads = [
            threading.Thread(target=lambda n=n: [log.info("thread %d line %d", n, i) for i in range(lines)])
            for n in range(threads)
        ]
        for thread in logging_threads:
            thread.start()
        for thread in logging_threads:
            thread.join()
    written = [messages(write) for write in writes]
    assert all(len(lines_written) == 1 for lines_written in written)
    assert sorted(line for (line,) in written) == sorted(
        f"thread {n} line {i}" for n in range(threads) for i in range(lines)
    )


def answers(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:  # not listening yet
        return False


def test_a_failed_write_is_reported_as_logging_reports_it_and_lines_go_on(log):
    with stderr_writes(FirstWriteFails()) as writes:
        log.info("first")  # its write fails
        log.info("last")
    written = b"".join(writes).decode()
    assert "--- Logging error ---" in written and "BrokenPipeError" in written  # not raised to the caller
    assert '"message":"last"' in written


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.system
def test_two_workers_lines_reach_a_slow_reader_whole_and_all_of_them(signum):
    """Two gevent workers answer rounds of 64 requests sent at once (on 64 keep-alive connections)
    into one pipe that a slow reader drains, so it fills up as when honcho falls behind: every
    line arrives whole, each request's exactly once, and each worker's last line, logged after its
    event loop stopped, too."""
    port = free_port()
    gunicorn = start_process(
        ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        stdout=subprocess.PIPE,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
    )
    received = []

    def read_slowly():
        while chunk := os.read(gunicorn.stdout.fileno(), 1024):
            received.append(chunk)
            time.sleep(0.005)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    request_ids = [f"burst-{number:0>122}" for number in range(1536)]  # the longest id accepted
    try:
        wait_for(lambda: answers(port), timeout=30, message="gunicorn")
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(64)]
        for start in range(0, len(request_ids), len(connections)):
            for connection, request_id in zip(connections, request_ids[start:], strict=False):
                connection.request("GET", "/health", headers={"X-Request-ID": request_id})
            for connection in connections:
                response = connection.getresponse()
                response.read()
                assert response.status == 200
    finally:
        gunicorn.send_signal(signum)
        exit_code = gunicorn.wait(timeout=30)
        reader.join(timeout=30)
    assert exit_code == 0
    lines = [json.loads(line) for line in b"".join(received).decode().splitlines()]  # each line whole JSON
    served = [line["request_id"] for line in lines if line.get("request_id", "").startswith("burst-")]
    assert sorted(served) == sorted(request_ids)
    assert sum(line["message"].startswith("Worker exiting") for line in lines) == 2
