"""Token issuing and the Redis blocklist of revoked tokens."""

import logging
from datetime import UTC, datetime

import redis
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from ..extensions import cache_redis

log = logging.getLogger(__name__)


def _blocklist_key(jti):
    return f"jwt:revoked:{jti}"


def issue_tokens(user, *, with_refresh):
    """The OAuth2 token response body for ``user``."""
    claims = {"is_admin": user.is_admin}
    body = {
        "access_token": create_access_token(identity=str(user.id), additional_claims=claims),
        "token_type": "bearer",
        "expires_in": int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
    }
    if with_refresh:
        body["refresh_token"] = create_refresh_token(identity=str(user.id))
    return body


def revoke(payload):
    """Blocklist a decoded token until it expires. Raises ``redis.RedisError`` if Redis is down."""
    remaining = payload["exp"] - int(datetime.now(UTC).timestamp())
    cache_redis.client.set(_blocklist_key(payload["jti"]), 1, ex=max(remaining, 1))


def is_revoked(_header, payload):
    """flask-jwt-extended's blocklist check; fails open while Redis is down (a documented trade-off)."""
    try:
        return bool(cache_redis.client.exists(_blocklist_key(payload["jti"])))
    except redis.RedisError:
        log.warning("Token blocklist unavailable (Redis down): accepting token %s", payload["jti"])
        return False
