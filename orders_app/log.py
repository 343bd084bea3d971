"""Logging for every process: one JSON object per line (or plain text for humans), each carrying
the request id and the order id of the work in hand.

Both ids live in context variables: set per HTTP request (``http.py``), and per message or
job by the relay, consumer and worker (``log_context``), so an order can be followed from the
request that created it to the worker that processed it; with traces on, the ids of the active
span too, which lead to its trace (``orders_app.tracing``). Imports only the standard library and
orjson (gunicorn's master process loads it before gevent patches, see ``gunicorn.conf.py``).
"""

import json
import logging
import select
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

# Set by ``orders_app.tracing`` when traces are on: the active span's ``trace_id`` and ``span_id``
# (an empty dict without one), added to every line. Off, it is None: one comparison per line.
span_ids = None

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
order_id_var: ContextVar[str | None] = ContextVar("order_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [request %(request_id)s, order %(order_id)s] %(message)s"
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged too.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Datetimes and dataclasses go to ``default=str`` too, as with ``json.dumps``, not orjson's own encoding.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def set_log_context(request_id=None, order_id=None):
    """From now on log lines carry these ids (``None`` keeps the current one); returns the tokens
    that ``reset_log_context`` restores the previous ones with."""
    return [
        (var, var.set(str(value)))
        for var, value in ((request_id_var, request_id), (order_id_var, order_id))
        if value is not None
    ]


def reset_log_context(tokens):
    for var, token in reversed(tokens):
        var.reset(token)


@contextmanager
def log_context(request_id=None, order_id=None):
    """Within the block, log lines carry these ids (``None`` keeps the current one)."""
    tokens = set_log_context(request_id, order_id)
    try:
        yield
    finally:
        reset_log_context(tokens)


class ContextFilter(logging.Filter):
    def filter(self, record):
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.order_id = getattr(record, "order_id", None) or order_id_var.get()
        if span_ids is not None:
            vars(record).update(span_ids())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a value JSON has no type for is written as its ``str``.

    orjson writes a request's line in half the time ``json.dumps`` takes (docs/decisions/0020).
    """

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and value is not None
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
        except orjson.JSONEncodeError:  # a lone surrogate, an integer past 64 bits: json writes them
            return json.dumps(entry, default=str)


# How soon a write that found the handler's lock held tries again.
RETRY_SECONDS = 0.005


class _Handler(logging.StreamHandler):
    """The service's handler on the root logger: told apart so it is installed once, and
    writing to whatever ``sys.stderr`` is at the time (redirected, or captured by pytest).

    Given an event loop (``write_once_per_loop_turn``), it writes the lines logged during one turn
    of the loop together, as the next turn starts: under load a gevent worker finishes many
    requests per turn, and whatever reads its output (honcho under `make run`, a container's log
    driver) then wakes once per burst instead of once per line. An idle worker's line is written
    as soon as its request's greenlet yields.
    """

    loop = None

    def __init__(self):
        super().__init__()
        self._pending = []  # (record, line) logged since the last write
        self._retry = None  # the loop's timer of a write the lock held off

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass

    def emit(self, record):
        if self.loop is None:
            super().emit(record)
            return
        try:
            self._pending.append((record, self.format(record) + self.terminator))
        except Exception:
            self.handleError(record)
            return
        if len(self._pending) == 1:
            self.loop.run_callback_threadsafe(self._write_pending)  # safe from gevent's thread pool too

    def _write_pending(self):
        """The loop's callback. The loop itself must never wait for the lock: while it is held (by
        a thread, or by a greenlet that yielded while formatting a line), it tries again shortly;
        the lines stay pending meanwhile, and no later line schedules another write."""
        if not self.lock.acquire(blocking=False):
            self._retry = self.loop.timer(RETRY_SECONDS)  # kept: the loop must not lose it
            self._retry.start(self._write_pending)
            return
        try:
            self.flush()
        finally:
            self.lock.release()

    def flush(self):
        """Write the pending lines, then flush the stream (also at exit: ``logging.shutdown``)."""
        with self.lock:
            pending, self._pending = self._pending, []
            stream = self.stream
            for first_record, data in _pipe_sized_writes(pending, stream.encoding, stream.errors):
                try:
                    stream.buffer.write(data)
                    stream.buffer.flush()
                except Exception:
                    self.handleError(first_record)
            super().flush()


def _pipe_sized_writes(pending, encoding, errors):
    """``(first record, bytes)`` of each write: whole lines, at most ``PIPE_BUF`` bytes a write when
    they fit, which a pipe takes whole, never interleaved with what the other processes sharing it
    (gunicorn's master and workers) write meanwhile. A longer line is a write of its own."""
    first, lines, size = None, [], 0
    for record, line in pending:
        data = line.encode(encoding, errors)
        if lines and size + len(data) > select.PIPE_BUF:
            yield first, b"".join(lines)
            lines, size = [], 0
        if not lines:
            first = record
        lines.append(data)
        size += len(data)
    if lines:
        yield first, b"".join(lines)


def make_handler(log_format):
    handler = _Handler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    return handler


def write_once_per_loop_turn(loop):
    """From now on this process's service handlers write the lines of each turn of ``loop`` (a
    gevent hub's) together; gunicorn's gevent workers call it once started."""
    _Handler.loop = loop


def configure_logging(level, log_format="json"):
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [make_handler(log_format)]
    root.setLevel(level)
    # pika narrates every connection step, and logs each failure with a traceback that the
    # relay, consumer and health check already report in one line of their own.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    # Alembic announces each of its plugins whenever an app is created.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
