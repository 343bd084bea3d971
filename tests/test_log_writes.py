"""How gunicorn's gevent workers write their log lines (``orders_app.log``): the lines of one turn
of the event loop in one write, a lone line at once, whole lines however many processes share the
pipe, and every line written when a worker stops."""

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
import weakref
from contextlib import contextmanager
from pathlib import Path

import gevent
import pytest

from orders_app.log import _Handler, make_handler, write_once_per_loop_turn

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
    """A logger of this test with the service's handler, writing once per turn of this thread's
    gevent loop."""
    monkeypatch.setattr(_Handler, "loop", None)  # restored after the test
    write_once_per_loop_turn(gevent.get_hub().loop)
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


def test_the_lines_of_a_loop_turn_are_written_together_as_the_next_turn_starts(log):
    with stderr_writes() as writes:
        for number in range(3):
            log.info("line %d", number)
        assert writes == []
        gevent.sleep(0)
        assert [messages(write) for write in writes] == [["line 0", "line 1", "line 2"]]
        log.info("alone")
        gevent.sleep(0)
    assert [messages(write) for write in writes[1:]] == [["alone"]]


def test_a_line_logged_from_gevents_thread_pool_is_written_too(log):
    with stderr_writes() as writes:
        gevent.get_hub().threadpool.apply(log.info, ("from a thread",))
        wait_for(lambda: gevent.sleep(0.01) or writes, timeout=2, message="the line")
    assert [messages(write) for write in writes] == [["from a thread"]]


def test_a_burst_is_written_in_whole_lines_of_at_most_pipe_buf_bytes_a_write(log):
    padding = "x" * 300
    with stderr_writes() as writes:
        for number in range(40):
            log.info("line %d %s", number, padding)
        log.info("long %s", "y" * select.PIPE_BUF)
        gevent.sleep(0)
    assert all(write.endswith(b"\n") for write in writes)
    assert [len(write) <= select.PIPE_BUF for write in writes[:-1]] == [True] * (len(writes) - 1)
    assert len(writes) <= 6  # 40 lines of ~400 bytes: 10 a write, then the long line on its own
    written = messages(b"".join(writes))
    assert written == [f"line {number} {padding}" for number in range(40)] + [f"long {'y' * select.PIPE_BUF}"]
    assert messages(writes[-1]) == written[-1:]


def test_lines_still_pending_are_written_when_logging_shuts_down(log):
    with stderr_writes() as writes:
        log.info("before exit")
        logging.shutdown(
            [weakref.ref(log.handlers[0])]
        )  # what the interpreter runs at exit, for this handler
    assert [messages(write) for write in writes] == [["before exit"]]


def test_lines_logged_by_threads_while_the_loop_writes_are_each_written_once(log, monkeypatch):
    """Real threads logging while the loop writes: none of their lines is lost or written twice,
    however often the interpreter switches between them."""
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
        while any(thread.is_alive() for thread in logging_threads):
            gevent.sleep(0)  # a turn of the loop: it writes what is pending
        gevent.sleep(0)
        log.handlers[0].flush()
    written = messages(b"".join(writes))
    assert sorted(written) == sorted(f"thread {n} line {i}" for n in range(threads) for i in range(lines))


def workers_writes(master):
    """How many writes gunicorn's workers (the master's children) have made so far."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master.pid:
                io_counts = (stat.parent / "io").read_text()
                total += int(io_counts.partition("syscw: ")[2].split()[0])
        except OSError:  # a process that just ended
            continue
    return total


def answers(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:  # not listening yet
        return False


def test_a_failed_write_is_reported_as_logging_reports_it_and_lines_go_on(log):
    with stderr_writes(FirstWriteFails()) as writes:
        log.info("first")
        gevent.sleep(0)  # its write fails
        log.info("last")
        gevent.sleep(0)
    written = b"".join(writes).decode()
    assert "--- Logging error ---" in written and "BrokenPipeError" in written  # not raised into the loop
    assert '"message":"last"' in written


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.system
def test_two_workers_lines_reach_a_slow_reader_whole_together_and_all_of_them(signum):
    """Two gevent workers answer rounds of 64 requests sent at once (on 64 keep-alive connections)
    into one pipe that a slow reader drains, so it fills up as when honcho falls behind: the lines
    of a round are written in a few writes, every line arrives whole, each request's exactly once,
    and each worker's last line, logged after its event loop stopped, too."""
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
        writes_before = workers_writes(gunicorn)
        for start in range(0, len(request_ids), len(connections)):
            for connection, request_id in zip(connections, request_ids[start:], strict=False):
                connection.request("GET", "/health", headers={"X-Request-ID": request_id})
            for connection in connections:
                response = connection.getresponse()
                response.read()
                assert response.status == 200
        writes = workers_writes(gunicorn) - writes_before
    finally:
        gunicorn.send_signal(signum)
        exit_code = gunicorn.wait(timeout=30)
        reader.join(timeout=30)
    assert exit_code == 0
    assert writes <= len(request_ids) / 2
    lines = [json.loads(line) for line in b"".join(received).decode().splitlines()]  # each line whole JSON
    served = [line["request_id"] for line in lines if line.get("request_id", "").startswith("burst-")]
    assert sorted(served) == sorted(request_ids)
    assert sum(line["message"].startswith("Worker exiting") for line in lines) == 2


def test_a_write_the_lock_holds_off_is_tried_again(log):
    """The loop never waits on the handler's lock (under gevent that raises): it tries again."""
    handler = log.handlers[0]
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with handler.lock:
            held.set()
            release.wait(5)

    with stderr_writes() as writes:
        log.info("held off")
        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        assert held.wait(5)
        gevent.sleep(0.05)  # turns of the loop: its write finds the lock held
        assert writes == []
        release.set()
        holder.join(5)
        log.info("after")
        deadline = time.monotonic() + 5
        while len(messages(b"".join(writes))) < 2 and time.monotonic() < deadline:
            gevent.sleep(0.01)
    assert messages(b"".join(writes)) == ["held off", "after"]
