"""Who may call, how often, and from which browser origins: rate-limit keys, CORS, trusted proxies."""

import functools
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError
from werkzeug.middleware.proxy_fix import ProxyFix

from .adapters import limiter
from .extensions import cors

log = logging.getLogger(__name__)

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
# An exact browser origin: scheme, host name or IPv4 address, optional port; nothing else.
EXACT_ORIGIN = re.compile(r"https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?")
# Operational endpoints a load balancer or a browser calls freely.
UNLIMITED_BLUEPRINTS = {"health", "api-docs", "swagger_ui", "metrics"}
# Where credentials are tried: a bearer header must not buy a fresh budget there, and while the
# limiter's storage is down they answer 503 (its in-memory fallback holds none of their limits).
ADDRESS_KEYED_ENDPOINTS = {"auth.issue_token", "auth.register"}


def never_raises(fallback: limiter.KeyFunc) -> Callable[[limiter.KeyFunc], limiter.KeyFunc]:
    """A key function that answers ``fallback()`` instead of raising, whatever the request.

    flask-limiter takes any exception from a key function for its storage being down, and then
    counts only the in-memory fallback limit in that worker: one malformed request would switch
    the per-route limits off.
    """

    def decorator(key_func: limiter.KeyFunc) -> limiter.KeyFunc:
        @functools.wraps(key_func)
        def key() -> str:
            try:
                return key_func()
            except Exception as error:  # whatever the input: never let the limiter see it
                log.warning("Rate-limit key %s failed on this request (%r)", key_func.__name__, error)
                return fallback()

        return key

    return decorator


def client_address_key() -> str:
    """``ip:<client address>``; an IPv6 client by its /64, the smallest block a host is usually given."""
    try:
        address = ipaddress.ip_address(request.remote_addr)  # type: ignore[arg-type]  # None: a ValueError too
    except ValueError:
        return f"ip:{request.remote_addr}"
    if isinstance(address, ipaddress.IPv6Address):
        return f"ip:{address.ipv4_mapped or ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"ip:{address}"


@never_raises(fallback=client_address_key)
def rate_limit_key() -> str:
    """``user:<id>`` for a request with a valid access token, else ``ip:<client address>``.

    Runs before the view's own token check, so it decodes the token itself (signature, expiry
    and type: a refresh token is no access token). Logging in and registering are always keyed
    by address.
    """
    if request.endpoint not in ADDRESS_KEYED_ENDPOINTS:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            try:
                claims = decode_token(token)
            except (JWTExtendedException, PyJWTError):
                claims = {}
            if claims.get("type") == "access" and "sub" in claims:
                return f"user:{claims['sub']}"
    return client_address_key()


def is_exempt() -> bool:
    """Requests no limit counts."""
    return request.method == "OPTIONS" or request.blueprint in UNLIMITED_BLUEPRINTS


def cors_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """flask-cors options; an entry of ``CORS_ORIGINS`` that is not an exact origin is refused."""
    for origin in config["CORS_ORIGINS"]:
        if not EXACT_ORIGIN.fullmatch(origin):
            raise RuntimeError(
                f"CORS_ORIGINS entry {origin!r} is not an exact origin such as https://shop.example.com "
                "(wildcards, patterns and paths are refused)"
            )
    return {
        "origins": config["CORS_ORIGINS"],
        "supports_credentials": False,  # the API authenticates with bearer tokens, never cookies
        "allow_headers": CORS_ALLOWED_HEADERS,
        "expose_headers": CORS_EXPOSED_HEADERS,
        "methods": ["GET", "POST", "PATCH", "OPTIONS"],
    }


def trust_proxies(app: Flask) -> None:
    """Read the client address from X-Forwarded-For when ``TRUSTED_PROXIES`` proxies stand in front.

    Only the address: X-Forwarded-Host and X-Forwarded-Proto are never trusted.
    """
    hops = app.config["TRUSTED_PROXIES"]
    if hops:
        # Flask's documented way to wrap its WSGI app, which mypy sees as replacing a method.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0)  # type: ignore[method-assign]


def init_app(app: Flask) -> None:
    """Rate limits (each view's, and the overall one), CORS and trusted proxies for ``app``; after
    every blueprint is registered."""
    trust_proxies(app)
    if app.config["CORS_ORIGINS"]:  # none allowed: no CORS header to write, nothing to run per request
        cors.init_app(app, **cors_options(app.config))
    limiter.init_app(
        app, key_func=rate_limit_key, exempt=is_exempt, fail_closed_endpoints=ADDRESS_KEYED_ENDPOINTS
    )
