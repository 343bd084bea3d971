"""Who may call, how often, and from which browser origins: rate limits, CORS, trusted proxies."""

from flask import current_app, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError
from werkzeug.middleware.proxy_fix import ProxyFix

CORS_ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "X-Request-ID",
]
CORS_EXPOSED_HEADERS = [
    "ETag", "Location", "Retry-After", "X-Cache", "X-Pagination", "X-Request-ID", "Idempotent-Replayed",
    "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
]  # fmt: skip
# Operational endpoints a load balancer or a browser calls freely.
UNLIMITED_BLUEPRINTS = {"health", "api-docs", "swagger_ui", "metrics"}


def rate_limit_key():
    """``user:<id>`` for a request with a valid token, else ``ip:<client address>``.

    Runs before the view's own token check, so it decodes the token itself (signature and
    expiry; a revoked token still names its user, and its request is refused anyway).
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        try:
            return f"user:{decode_token(token)['sub']}"
        except (JWTExtendedException, PyJWTError, KeyError):
            pass
    return f"ip:{request.remote_addr}"


def configured_limit(key):
    """A limit read from the configuration at request time (so tests and FLASK_ settings change it)."""
    return lambda: current_app.config[key]


def is_exempt():
    return request.method == "OPTIONS" or request.blueprint in UNLIMITED_BLUEPRINTS


def cors_options(config):
    return {
        "origins": config["CORS_ORIGINS"],
        "supports_credentials": True,
        "allow_headers": CORS_ALLOWED_HEADERS,
        "expose_headers": CORS_EXPOSED_HEADERS,
        "methods": ["GET", "POST", "PATCH", "OPTIONS"],
    }


def trust_proxies(app):
    """Read the client address from X-Forwarded-For when ``TRUSTED_PROXIES`` proxies stand in front."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
