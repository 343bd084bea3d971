"""Who is calling: helpers over the verified access token."""

from dataclasses import dataclass

from flask_jwt_extended import get_jwt, get_jwt_identity
from flask_smorest import abort

from ..extensions import db
from ..models import User


@dataclass(frozen=True)
class Viewer:
    """Who is asking: admins see and change every order."""

    user_id: int
    is_admin: bool = False

    def may_see(self, owner_id):
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
        abort(401, message="The token's user no longer exists", headers={"WWW-Authenticate": "Bearer"})
    return user
