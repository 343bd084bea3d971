"""Token issuing, refresh-token rotation and the Redis blocklist of revoked tokens.

Every login starts a *family*: its refresh token carries the family id (claim ``fam``) and the
login's time (claim ``auth_time``), and so does each refresh token rotated from it. A refresh
token works once; presenting one that was already used (a stolen copy, replayed) revokes its
whole family (OAuth 2.0 Security BCP). A family lives ``JWT_REFRESH_FAMILY_MAX_DAYS`` at most.

Every token also carries its user's *version* (claim ``ver``), a counter in Redis that goes up
when the user's role changes or the user is deleted: the token is refused from the next request
on, not when it expires (``is_revoked`` reads the counter in the blocklist's round trip).
"""

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import redis
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import Connection, event, inspect, select
from sqlalchemy.orm import Mapper, Session, object_session

from ..extensions import cache_redis, db
from ..models import User
from .schemas import TokenData

log = logging.getLogger(__name__)

FAMILY_CLAIM = "fam"
LOGIN_TIME_CLAIM = "auth_time"  # OpenID Connect's name for when the user authenticated
VERSION_CLAIM = "ver"
# Users whose role changed or who were deleted in a session's transaction, in ``session.info``.
CHANGED_USERS = "users_whose_tokens_end"


def _blocklist_key(jti: str) -> str:
    return f"jwt:revoked:{jti}"


def _family_key(family: str) -> str:
    return f"jwt:revoked-family:{family}"


def _version_key(user_id: int | str) -> str:
    return f"jwt:user-version:{user_id}"


def _user_version(user_id: int) -> int:
    """The user's current version; 0 while Redis is down (a token issued then is refused once
    Redis is back if the user's version is higher: log in again)."""
    try:
        version = cast(str | None, cache_redis.client.get(_version_key(user_id)))
        return int(version or 0)
    except redis.RedisError:
        log.warning("User versions unavailable (Redis down): issuing tokens of version 0")
        return 0


def issue_tokens(user: User, rotated: dict[str, Any] | None = None) -> TokenData:
    """The OAuth2 token response body for ``user``; the refresh token carries on the family of
    ``rotated`` (the claims of the refresh token it replaces), or starts one."""
    config = current_app.config
    if rotated and rotated.get(FAMILY_CLAIM):
        family = {FAMILY_CLAIM: rotated[FAMILY_CLAIM], LOGIN_TIME_CLAIM: _login_time(rotated)}
    else:
        family = {FAMILY_CLAIM: uuid.uuid4().hex, LOGIN_TIME_CLAIM: _now()}
    version = {VERSION_CLAIM: _user_version(user.id)}
    # The role read after the version: a role changed since ``user`` was loaded (during a login's
    # password check, say) is seen here, or else its version bump, made after its commit, is
    # newer than these tokens' and refuses them.
    is_admin = bool(db.session.scalar(select(User.is_admin).where(User.id == user.id)))
    return {
        "access_token": create_access_token(
            identity=str(user.id), additional_claims={"is_admin": is_admin, **version}
        ),
        "token_type": "bearer",
        "expires_in": int(config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
        "refresh_token": create_refresh_token(identity=str(user.id), additional_claims={**family, **version}),
    }


def family_expired(payload: dict[str, Any]) -> bool:
    """Whether the login that started this refresh token's family is older than
    ``JWT_REFRESH_FAMILY_MAX_DAYS``: rotation stops there, however often it happened."""
    max_age: int = current_app.config["JWT_REFRESH_FAMILY_MAX_DAYS"] * 24 * 3600
    return _now() - _login_time(payload) > max_age


def _login_time(payload: dict[str, Any]) -> int:
    """A refresh token's login time; one issued before the claim existed counts from its own issue."""
    login_time: int = payload.get(LOGIN_TIME_CLAIM, payload["iat"])
    return login_time


def revoke(payload: dict[str, Any]) -> None:
    """Blocklist a decoded token until it expires. Raises ``redis.RedisError`` if Redis is down."""
    cache_redis.client.set(_blocklist_key(payload["jti"]), 1, ex=_seconds_left(payload))


def rotate(payload: dict[str, Any]) -> bool:
    """Revoke a refresh token as it is used: True the first time, False (and its family revoked) after.

    ``SET NX`` decides: of two requests racing with one token, exactly one wins.
    Raises ``redis.RedisError`` if Redis is down.
    """
    if cache_redis.client.set(_blocklist_key(payload["jti"]), 1, ex=_seconds_left(payload), nx=True):
        return True
    _replayed(payload)
    return False


def revoke_family(payload: dict[str, Any]) -> None:
    """Revoke every refresh token of ``payload``'s family, for as long as any of them can live."""
    lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    cache_redis.client.set(_family_key(_family_of(payload)), 1, ex=int(lifetime.total_seconds()))


def _family_of(payload: dict[str, Any]) -> str:
    """A refresh token's family; a token issued before families existed is a family of its own."""
    family: str = payload.get(FAMILY_CLAIM) or payload["jti"]
    return family


def _replayed(payload: dict[str, Any]) -> None:
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


def is_revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
    """flask-jwt-extended's blocklist check; fails open while Redis is down (a documented trade-off).

    A token is revoked when blocklisted, or when its user's version moved on (role changed, user
    deleted): both read in one round trip. A refresh token found blocklisted is being replayed:
    refused, and its family revoked too.
    """
    keys = [_blocklist_key(payload["jti"])]
    if payload["type"] == "refresh":
        keys.append(_family_key(_family_of(payload)))
    pipeline = cache_redis.client.pipeline(transaction=False)
    pipeline.exists(*keys)
    pipeline.get(_version_key(payload["sub"]))
    try:
        blocklisted, version = pipeline.execute()
    except redis.RedisError:
        log.warning("Token blocklist unavailable (Redis down): accepting token %s", payload["jti"])
        return False
    if blocklisted and payload["type"] == "refresh":
        _replayed(payload)
    return bool(blocklisted) or int(version or 0) != payload.get(VERSION_CLAIM, 0)


@event.listens_for(User, "after_update")
def _note_role_change(_mapper: Mapper[User], _connection: Connection, user: User) -> None:
    if inspect(user).attrs.is_admin.history.has_changes():
        _note_changed(user)


@event.listens_for(User, "after_delete")
def _note_deletion(_mapper: Mapper[User], _connection: Connection, user: User) -> None:
    _note_changed(user)


def _note_changed(user: User) -> None:
    session = object_session(user)
    assert session is not None, "flushed, so in a session"
    session.info.setdefault(CHANGED_USERS, set()).add(user.id)


@event.listens_for(Session, "after_commit")
def _end_changed_users_tokens(session: Session) -> None:
    """Once committed, the tokens of users whose role changed or who were deleted stop working.
    Raises ``redis.RedisError`` if Redis is down: the change is kept, the tokens live on."""
    user_ids = session.info.pop(CHANGED_USERS, ())
    if user_ids:
        pipeline = cache_redis.client.pipeline(transaction=False)
        for user_id in user_ids:
            pipeline.incr(_version_key(user_id))
        pipeline.execute()


@event.listens_for(Session, "after_rollback")
def _forget_changed_users(session: Session) -> None:
    session.info.pop(CHANGED_USERS, None)


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


def _seconds_left(payload: dict[str, Any]) -> int:
    expires_at: int = payload["exp"]
    return max(expires_at - _now(), 1)
