"""Cross-cutting HTTP concerns: the request id, a log line per request, security headers."""

import logging
import re
import time
import uuid
from contextlib import ExitStack

from flask import g, request

from .log import log_context
from .metrics import observe_request

log = logging.getLogger("orders_app.requests")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is echoed back and written to logs: accept only a short, plain token.
# Events carry it too, and the consumer validates theirs with the same pattern.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI's page runs an inline bootstrap script and inline styles.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


def init_app(app):
    @app.before_request
    def enter_log_context():
        g.started = time.perf_counter()
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = sent if REQUEST_ID_PATTERN.match(sent) else uuid.uuid4().hex
        g.log_context = ExitStack()
        order_id = (request.view_args or {}).get("order_id")
        g.log_context.enter_context(log_context(request_id=g.request_id, order_id=order_id))

    @app.teardown_request
    def leave_log_context(_error):
        if "log_context" in g:
            g.pop("log_context").close()

    @app.after_request
    def finish(response):
        response.headers[REQUEST_ID_HEADER] = g.request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        is_docs = request.path == "/docs" or request.path.startswith("/docs/")
        response.headers["Content-Security-Policy"] = DOCS_CSP if is_docs else API_CSP
        duration_ms = round((time.perf_counter() - g.started) * 1000, 2)
        observe_request(request, response.status_code, duration_ms / 1000)
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={"method": request.method, "path": request.path, "status": response.status_code,
                   "duration_ms": duration_ms, "client": request.remote_addr},
        )  # fmt: skip
        return response
