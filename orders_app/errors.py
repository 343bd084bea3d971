"""One error body for everything: flask-smorest's, JWT failures included.

flask-smorest renders every ``HTTPException`` (404, 405, 413, 422, 500...) as
``{"code", "status", "message"?, "errors"?}``; ``ErrorBodyMixin`` makes ``message`` always present,
and the JWT handlers give flask-jwt-extended's failures the same body with 401.
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify
from flask_jwt_extended import JWTManager
from sqlalchemy import exc as sqlalchemy_errors
from werkzeug.exceptions import HTTPException

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

# A body's ``errors``: per location (``json``, ``query``, ``headers``), per field, the messages.
ErrorDetails = Mapping[str, Mapping[str, list[str]]]
# An error answer as a view or an error handler returns it: the body, its status, its headers.
ErrorAnswer = tuple[Response, int, Mapping[str, str]]


class ErrorBodyMixin:
    """flask-smorest's ``Api``, rendering every ``HTTPException`` in this service's error body:
    ``message`` always present, and the exception's own headers kept (``Allow`` on a 405)."""

    def handle_http_exception(
        self, error: HTTPException
    ) -> tuple[dict[str, Any], int | None, dict[str, str]]:
        # flask-smorest's Api (untyped) follows this mixin in the MRO.
        payload, code, headers = super().handle_http_exception(error)  # type: ignore[misc]
        if "message" not in payload:
            payload["message"] = "Invalid input; see errors" if "errors" in payload else error.description
        # Keep the exception's own headers (Allow on a 405, for one); the body is JSON, not HTML.
        own_headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        return payload, code, {**own_headers, **(headers or {})}


class ServiceError(Exception):
    """A broken business rule; ``status_code``, the message and ``errors`` make the error body."""

    status_code = 400
    headers: Mapping[str, str] | None = None

    def __init__(self, message: str, errors: ErrorDetails | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class UserGone(ServiceError):
    """A valid token whose user was deleted: refused like any unusable token."""

    status_code = 401
    headers = BEARER_CHALLENGE

    def __init__(self) -> None:
        super().__init__("The token's user no longer exists")


def error_response(
    code: int, message: str, headers: Mapping[str, str] | None = None, errors: ErrorDetails | None = None
) -> ErrorAnswer:
    body: dict[str, Any] = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), code, headers or {}


def service_error_response(error: ServiceError) -> ErrorAnswer:
    return error_response(error.status_code, error.message, error.headers, error.errors)


def register_service_error_handlers(app: Flask) -> None:
    app.register_error_handler(ServiceError, service_error_response)
    for outage in DATABASE_OUTAGES:
        app.register_error_handler(outage, database_unavailable)
    app.register_error_handler(sqlalchemy_errors.DataError, database_refused_value)


def database_unavailable(error: Exception) -> ErrorAnswer:
    log.warning("PostgreSQL unavailable: %s: %s", type(error).__name__, str(error).splitlines()[0])
    return error_response(503, "The database is unavailable; retry shortly", RETRY_LATER)


def database_refused_value(error: sqlalchemy_errors.DataError) -> ErrorAnswer:
    """PostgreSQL refused a value the schemas let through (out of its range, say): the input's fault."""
    log.warning("PostgreSQL refused a value: %s", str(error.orig).splitlines()[0])
    return error_response(422, "A value is out of the range the service stores")


def unauthorized(message: str) -> ErrorAnswer:
    return error_response(401, message, BEARER_CHALLENGE)


def register_jwt_error_handlers(jwt: JWTManager) -> None:
    @jwt.unauthorized_loader
    def missing_token(reason: str) -> ErrorAnswer:
        return unauthorized(f"Missing or malformed Authorization header: {reason}")

    @jwt.invalid_token_loader
    def invalid_token(reason: str) -> ErrorAnswer:
        return unauthorized(f"Invalid token: {reason}")

    @jwt.expired_token_loader
    def expired_token(_header: dict[str, Any], _payload: dict[str, Any]) -> ErrorAnswer:
        return unauthorized("Token has expired")

    @jwt.revoked_token_loader
    def revoked_token(_header: dict[str, Any], _payload: dict[str, Any]) -> ErrorAnswer:
        return unauthorized("Token has been revoked")

    @jwt.user_lookup_error_loader
    def user_gone(_header: dict[str, Any], _payload: dict[str, Any]) -> ErrorAnswer:
        return service_error_response(UserGone())
