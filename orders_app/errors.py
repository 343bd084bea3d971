"""One error body for everything: flask-smorest's, JWT failures included.

flask-smorest renders every ``HTTPException`` (404, 405, 413, 422, 500...) as
``{"code", "status", "message"?, "errors"?}``; ``ErrorBodyMixin`` makes ``message`` always present,
and the JWT handlers give flask-jwt-extended's failures the same body with 401.
"""

import logging
from http import HTTPStatus

from flask import jsonify
from sqlalchemy import exc as sqlalchemy_errors

log = logging.getLogger(__name__)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Seconds a client should wait before retrying while a dependency is unreachable.
RETRY_AFTER_SECONDS = 2
RETRY_LATER = {"Retry-After": str(RETRY_AFTER_SECONDS)}
# PostgreSQL unreachable, restarting, or the connection cut mid-request; a full pool too.
DATABASE_OUTAGES = (
    sqlalchemy_errors.OperationalError,
    sqlalchemy_errors.InterfaceError,
    sqlalchemy_errors.DisconnectionError,
    sqlalchemy_errors.TimeoutError,
)


class ErrorBodyMixin:
    """flask-smorest's ``Api``, rendering every ``HTTPException`` in this service's error body:
    ``message`` always present, and the exception's own headers kept (``Allow`` on a 405)."""

    def handle_http_exception(self, error):
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = "Invalid input; see errors" if "errors" in payload else error.description
        # Keep the exception's own headers (Allow on a 405, for one); the body is JSON, not HTML.
        own_headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        return payload, code, {**own_headers, **(headers or {})}


class ServiceError(Exception):
    """A broken business rule; ``status_code``, the message and ``errors`` make the error body."""

    status_code = 400
    headers = None

    def __init__(self, message, errors=None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class UserGone(ServiceError):
    """A valid token whose user was deleted: refused like any unusable token."""

    status_code = 401
    headers = BEARER_CHALLENGE

    def __init__(self):
        super().__init__("The token's user no longer exists")


def error_response(code, message, headers=None, errors=None):
    body = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), code, headers or {}


def service_error_response(error):
    return error_response(error.status_code, error.message, error.headers, error.errors)


def register_service_error_handlers(app):
    app.register_error_handler(ServiceError, service_error_response)
    for outage in DATABASE_OUTAGES:
        app.register_error_handler(outage, database_unavailable)
    app.register_error_handler(sqlalchemy_errors.DataError, database_refused_value)


def database_unavailable(error):
    log.warning("PostgreSQL unavailable: %s: %s", type(error).__name__, str(error).splitlines()[0])
    return error_response(503, "The database is unavailable; retry shortly", RETRY_LATER)


def database_refused_value(error):
    """PostgreSQL refused a value the schemas let through (out of its range, say): the input's fault."""
    log.warning("PostgreSQL refused a value: %s", str(error.orig).splitlines()[0])
    return error_response(422, "A value is out of the range the service stores")


def unauthorized(message):
    return error_response(401, message, BEARER_CHALLENGE)


def register_jwt_error_handlers(jwt):
    @jwt.unauthorized_loader
    def missing_token(reason):
        return unauthorized(f"Missing or malformed Authorization header: {reason}")

    @jwt.invalid_token_loader
    def invalid_token(reason):
        return unauthorized(f"Invalid token: {reason}")

    @jwt.expired_token_loader
    def expired_token(_header, _payload):
        return unauthorized("Token has expired")

    @jwt.revoked_token_loader
    def revoked_token(_header, _payload):
        return unauthorized("Token has been revoked")

    @jwt.user_lookup_error_loader
    def user_gone(_header, _payload):
        return service_error_response(UserGone())
