"""Process-wide logging; every record carries the request id of the work it belongs to.

The request id lives in a context variable: set per HTTP request (``http.py``), and per message
or job by the relay, consumer and worker (``log_context``), so an order can be followed from
the request that created it to the worker that processed it.
"""

import logging
from contextlib import contextmanager
from contextvars import ContextVar

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


@contextmanager
def log_context(request_id):
    token = request_id_var.set(request_id or "-")
    try:
        yield
    finally:
        request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class _Handler(logging.StreamHandler):
    """The service's handler on the root logger (told apart so it is installed once)."""


def configure_logging(level):
    handler = _Handler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel(level)
    # pika narrates every connection step at INFO.
    logging.getLogger("pika").setLevel(max(logging.WARNING, root.level))
