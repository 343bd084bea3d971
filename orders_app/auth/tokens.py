"""Token issuing, refresh-token rotation and the Redis blocklist of revoked tokens.

Every login starts a *family*: its refresh token carries the family id (claim ``fam``), and so
does each refresh token rotated from it. A refresh token works once; presenting one that was
already used (a stolen copy, replayed) revokes its whole family (OAuth 2.0 Security BCP).
"""

import logging
import uuid
from datetime import UTC, datetime

import redis
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from ..extensions import cache_redis

log = logging.getLogger(__name__)

FAMILY_CLAIM = "fam"


def _blocklist_key(jti):
    return f"jwt:revoked:{jti}"


def _family_key(family):
    return f"jwt:revoked-family:{family}"


def issue_tokens(user, family=None):
    """The OAuth2 token response body for ``user``; the refresh token joins ``family`` (or a new one)."""
    config = current_app.config
    return {
        "access_token": create_access_token(
            identity=str(user.id), additional_claims={"is_admin": user.is_admin}
        ),
        "token_type": "bearer",
        "expires_in": int(config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
        "refresh_token": create_refresh_token(
            identity=str(user.id), additional_claims={FAMILY_CLAIM: family or uuid.uuid4().hex}
        ),
    }


def revoke(payload):
    """Blocklist a decoded token until it expires. Raises ``redis.RedisError`` if Redis is down."""
    cache_redis.client.set(_blocklist_key(payload["jti"]), 1, ex=_seconds_left(payload))


def rotate(payload):
    """Revoke a refresh token as it is used: True the first time, False (and its family revoked) after.

    ``SET NX`` decides: of two requests racing with one token, exactly one wins.
    Raises ``redis.RedisError`` if Redis is down.
    """
    if cache_redis.client.set(_blocklist_key(payload["jti"]), 1, ex=_seconds_left(payload), nx=True):
        return True
    _replayed(payload)
    return False


def revoke_family(payload):
    """Revoke every refresh token of ``payload``'s family, for as long as any of them can live."""
    lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    cache_redis.client.set(_family_key(_family_of(payload)), 1, ex=int(lifetime.total_seconds()))


def _family_of(payload):
    """A refresh token's family; a token issued before families existed is a family of its own."""
    return payload.get(FAMILY_CLAIM) or payload["jti"]


def _replayed(payload):
    """Revoke the family of a used refresh token presented again. The caller refuses the token
    whether or not Redis takes this write, so a failed write is logged, not raised."""
    try:
        revoke_family(payload)
    except redis.RedisError as error:
        log.error(
            "A used refresh token of user %s was presented again; its family could not be revoked: %r",
            payload["sub"],
            error,
        )
        return
    log.warning("A used refresh token of user %s was presented again: its family is revoked", payload["sub"])


def is_revoked(_header, payload):
    """flask-jwt-extended's blocklist check; fails open while Redis is down (a documented trade-off).

    A refresh token found revoked is being replayed: refused, and its family revoked too.
    """
    keys = [_blocklist_key(payload["jti"])]
    if payload["type"] == "refresh":
        keys.append(_family_key(_family_of(payload)))
    try:
        revoked = bool(cache_redis.client.exists(*keys))
    except redis.RedisError:
        log.warning("Token blocklist unavailable (Redis down): accepting token %s", payload["jti"])
        return False
    if revoked and payload["type"] == "refresh":
        _replayed(payload)
    return revoked


def _seconds_left(payload):
    return max(payload["exp"] - int(datetime.now(UTC).timestamp()), 1)
