"""Who is calling: helpers over the verified access token."""

from flask_jwt_extended import get_jwt, get_jwt_identity
from flask_smorest import abort

from ..extensions import db
from ..models import User


def current_user_id() -> int:
    return int(get_jwt_identity())


def current_user_is_admin() -> bool:
    return bool(get_jwt().get("is_admin"))


def current_user() -> User:
    user = db.session.get(User, current_user_id())
    if user is None:
        abort(401, message="The token's user no longer exists", headers={"WWW-Authenticate": "Bearer"})
    return user
