"""Cross-cutting HTTP concerns: the request id and security headers on every response."""

import re
import uuid

from flask import g, request

from .log import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is echoed back and written to logs: accept only a short, plain token.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI's page runs an inline bootstrap script and inline styles.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


def init_app(app):
    @app.before_request
    def assign_request_id():
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = sent if _VALID_REQUEST_ID.match(sent) else uuid.uuid4().hex
        g.request_id_token = request_id_var.set(g.request_id)

    @app.teardown_request
    def forget_request_id(_error):
        if "request_id_token" in g:
            request_id_var.reset(g.pop("request_id_token"))

    @app.after_request
    def add_headers(response):
        response.headers[REQUEST_ID_HEADER] = g.request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        is_docs = request.path == "/docs" or request.path.startswith("/docs/")
        response.headers["Content-Security-Policy"] = DOCS_CSP if is_docs else API_CSP
        return response
