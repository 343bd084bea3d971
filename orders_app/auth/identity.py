"""Who is calling: helpers over the verified access token, and the check that its user exists."""

import threading
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from flask import Flask, current_app
from flask_jwt_extended import get_jwt, get_jwt_identity

from ..errors import UserGone
from ..extensions import db
from ..models import User

# Users a process remembers as existing at once (about 100 bytes each).
KNOWN_USERS_MAX = 10_000


@dataclass(frozen=True)
class Viewer:
    """Who is asking: admins see and change every order."""

    user_id: int
    is_admin: bool = False

    def may_see(self, owner_id: int) -> bool:
        return self.is_admin or self.user_id == owner_id


def current_user_id() -> int:
    return int(get_jwt_identity())


def current_user_is_admin() -> bool:
    return bool(get_jwt().get("is_admin"))


def current_viewer() -> Viewer:
    return Viewer(user_id=current_user_id(), is_admin=current_user_is_admin())


def current_user() -> User:
    user = db.session.get(User, current_user_id())
    if user is None:
        raise UserGone()
    return user


def init_app(app: Flask) -> None:
    app.extensions["known_users"] = TTLCache(KNOWN_USERS_MAX, ttl=app.config["USER_EXISTS_CACHE_SECONDS"])
    app.extensions["known_users_lock"] = threading.Lock()


def token_user_exists(_header: dict[str, Any], claims: dict[str, Any]) -> int | None:
    """flask-jwt-extended's user lookup: a valid token whose user was deleted is refused (401)
    on every route. Returns the user id, or ``None`` when the user is gone.

    A user found is remembered by this process for ``USER_EXISTS_CACHE_SECONDS``: a database
    round trip per request would double the time of a cached read. Within that time a deleted
    user's token may still read (it finds nothing of its own); writes that need the user answer
    401 regardless (the foreign key refuses them).
    """
    user_id = int(claims["sub"])
    known, lock = current_app.extensions["known_users"], current_app.extensions["known_users_lock"]
    with lock:
        if user_id in known:
            return user_id
    if db.session.get(User, user_id) is None:
        return None
    with lock:
        known[user_id] = True
    return user_id
