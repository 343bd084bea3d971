"""One error body for everything: flask-smorest's, JWT failures included.

flask-smorest renders every ``HTTPException`` (404, 405, 413, 422, 500...) as
``{"code", "status", "message"?, "errors"?}``; ``Api`` makes ``message`` always present,
and the JWT handlers give flask-jwt-extended's failures the same body with 401.
"""

from http import HTTPStatus

import flask_smorest
from flask import jsonify

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Api(flask_smorest.Api):
    def handle_http_exception(self, error):
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = "Invalid input; see errors" if "errors" in payload else error.description
        return payload, code, headers


class ServiceError(Exception):
    """A broken business rule; ``status_code``, the message and ``errors`` make the error body."""

    status_code = 400

    def __init__(self, message, errors=None):
        super().__init__(message)
        self.message = message
        self.errors = errors


def error_response(code, message, headers=None, errors=None):
    body = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), code, headers or {}


def register_service_error_handler(app):
    @app.errorhandler(ServiceError)
    def service_error(error):
        return error_response(error.status_code, error.message, errors=error.errors)


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
