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
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TextIO

import orjson

# Set by ``orders_app.tracing`` when traces are on: the active span's ``trace_id`` and ``span_id``
# (an empty dict without one), added to every line. Off, it is None: one comparison per line.
span_ids: Callable[[], dict[str, str]] | None = None

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
order_id_var: ContextVar[str | None] = ContextVar("order_id", default=None)
# What ``set_log_context`` returns and ``reset_log_context`` restores.
LogContextTokens = list[tuple[ContextVar[str | None], Token[str | None]]]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [request %(request_id)s, order %(order_id)s] %(message)s"
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged too.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Datetimes and dataclasses go to ``default=str`` too, as with ``json.dumps``, not orjson's own encoding.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def set_log_context(request_id: object = None, order_id: object = None) -> LogContextTokens:
    """From now on log lines carry these ids (``None`` keeps the current one); returns the tokens
    that ``reset_log_context`` restores the previous ones with."""
    return [
        (var, var.set(str(value)))
        for var, value in ((request_id_var, request_id), (order_id_var, order_id))
        if value is not None
    ]


def reset_log_context(tokens: LogContextTokens) -> None:
    for var, token in reversed(tokens):
        var.reset(token)


@contextmanager
def log_context(request_id: object = None, order_id: object = None) -> Iterator[None]:
    """Within the block, log lines carry these ids (``None`` keeps the current one)."""
    tokens = set_log_context(request_id, order_id)
    try:
        yield
    finally:
        reset_log_context(tokens)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.order_id = getattr(record, "order_id", None) or order_id_var.get()
        if span_ids is not None:
            vars(record).update(span_ids())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a value JSON has no type for is written as its ``str``.

    Written by orjson, faster than ``json.dumps`` (docs/decisions/0020, docs/performance.md).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
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


class _Handler(logging.StreamHandler[TextIO]):
    """The service's handler on the root logger: told apart so it is installed once, and
    writing to whatever ``sys.stderr`` is at the time (redirected, or captured by pytest).

    Each line is one write, made as it is logged: a pipe takes a write of up to ``PIPE_BUF``
    bytes (4 KiB) whole, so the lines of the processes sharing one (gunicorn's master and
    workers) never interleave (docs/decisions/0030).
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def make_handler(log_format: str) -> logging.Handler:
    handler = _Handler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(level: int | str, log_format: str = "json") -> None:
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [make_handler(log_format)]
    root.setLevel(level)
    # pika narrates every connection step, and logs each failure with a traceback that the
    # relay, consumer and health check already report in one line of their own.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    # Alembic announces each of its plugins whenever an app is created.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
