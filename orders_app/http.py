"""Cross-cutting HTTP concerns: the request id, a log line per request, security headers."""

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from .log import reset_log_context, set_log_context
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


# Set on every response; only this module sets them (``add`` appends without looking for a
# header of the same name first).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def init_app(app: Flask) -> None:
    @app.before_request
    def enter_log_context() -> None:
        g.started = time.perf_counter()
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = sent if REQUEST_ID_PATTERN.match(sent) else uuid.uuid4().hex
        order_id = (request.view_args or {}).get("order_id")
        g.log_context = set_log_context(request_id=g.request_id, order_id=order_id)

    @app.teardown_request
    def leave_log_context(_error: BaseException | None) -> None:
        if "log_context" in g:
            reset_log_context(g.pop("log_context"))

    @app.after_request
    def finish(response: Response) -> Response:
        # The request itself, looked up once instead of once per use (Flask documents this method,
        # underscore and all, for exactly this: "Notes On Proxies").
        current = request._get_current_object()  # type: ignore[attr-defined]  # typed as the Request
        method, path, status = current.method, current.path, response.status_code
        headers = response.headers
        headers.add(REQUEST_ID_HEADER, g.request_id)
        for name, value in SECURITY_HEADERS:
            headers.add(name, value)
        is_docs = path == "/docs" or path.startswith("/docs/")
        headers.add("Content-Security-Policy", DOCS_CSP if is_docs else API_CSP)
        duration_ms = round((time.perf_counter() - g.started) * 1000, 2)
        observe_request(current, status, duration_ms / 1000)
        log.info(
            "%s %s %s",
            method,
            path,
            status,
            extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms,
                   "client": current.remote_addr},
        )  # fmt: skip
        return response
