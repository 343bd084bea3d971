"""Auth endpoints: register, OAuth2 password-flow token, refresh, logout, current user."""

import hashlib
from collections.abc import Mapping
from typing import Any

import redis
from flask import Response, request
from flask_jwt_extended import get_jwt
from flask_smorest import abort
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..adapters.limiter import give_back, limit
from ..adapters.smorest import Blueprint
from ..errors import BEARER_CHALLENGE, RETRY_LATER
from ..extensions import db
from ..models import User
from ..protection import never_raises
from . import passwords, tokens
from .identity import current_user
from .schemas import (
    LogoutSchema,
    RegisterSchema,
    TokenData,
    TokenRequestSchema,
    TokenSchema,
    UserSchema,
    normalise_username,
)

blp = Blueprint("auth", __name__, description="Registration, tokens and the current user")
# Their answers carry tokens: no cache may keep one, errors included (RFC 6749 5.1).
NEVER_STORED = {"auth.issue_token", "auth.refresh_token"}


@blp.after_request
def never_store_tokens(response: Response) -> Response:
    if request.endpoint in NEVER_STORED:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


UNREADABLE_LOGIN_KEY = "username:unreadable"  # a body /token cannot read either: no password is tried


@never_raises(fallback=lambda: UNREADABLE_LOGIN_KEY)
def login_username_key() -> str:
    """The account a login tries (read as ``/token`` reads it), hashed into a short rate-limit key."""
    data = request.form or request.get_json(silent=True)
    username = data.get("username") if isinstance(data, Mapping) else None
    account = normalise_username(username) if isinstance(username, str) else ""
    return "username:" + hashlib.sha256(account.encode(errors="surrogatepass")).hexdigest()


@blp.route("/register/", methods=["POST"])
@limit("RATELIMIT_REGISTER")
@blp.arguments(RegisterSchema)
@blp.response(201, UserSchema)
@blp.error(409, "The email is already registered")
def register(data: dict[str, Any]) -> User:
    user = User(email=data["email"], password_hash=passwords.hash_password(data["password"]))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        abort(409, message="This email is already registered")
    return user


@blp.route("/token", methods=["POST"])
@limit("RATELIMIT_TOKEN")
# Guesses per account, whatever the addresses: each attempt counts before its password is
# verified (concurrent guesses cannot all pass a check made before any of them was counted);
# a successful login gives its attempt back.
@limit("RATELIMIT_TOKEN_PER_USERNAME", key_func=login_username_key)
@blp.arguments(TokenRequestSchema, location="json_or_form")
@blp.response(200, TokenSchema)
@blp.error(401, "Wrong email or password")
def issue_token(data: dict[str, Any]) -> TokenData:
    """Log in (OAuth2 password flow). Takes a form, or JSON with the same fields."""
    user = db.session.scalar(select(User).where(User.email == data["username"]))
    if not passwords.verify_password(None if user is None else user.password_hash, data["password"]):
        abort(401, message="Wrong email or password", headers=BEARER_CHALLENGE)
    assert user is not None, "no password verifies without a user"
    give_back(login_username_key)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(data["password"])
        db.session.commit()
    return tokens.issue_tokens(user)


@blp.route("/token/refresh", methods=["POST"])
@blp.auth_required(refresh=True)
@blp.response(200, TokenSchema)
@blp.error(503, "The blocklist is unavailable; the refresh token cannot be rotated")
def refresh_token() -> TokenData:
    """A new token pair for a refresh token (sent as the Bearer token).

    Each refresh token works once. Presenting a used one again revokes every refresh token
    descended from the same login: log in again. A login's refresh tokens rotate for 30 days at
    most (``JWT_REFRESH_FAMILY_MAX_DAYS``); then log in again.
    """
    user, claims = current_user(), get_jwt()
    if tokens.family_expired(claims):
        abort(401, message="Session expired: log in again", headers=BEARER_CHALLENGE)
    try:
        first_use = tokens.rotate(claims)
    except redis.RedisError:
        abort(503, message="Cannot rotate the refresh token right now; try again shortly")
    if not first_use:
        abort(401, message="Token has been revoked", headers=BEARER_CHALLENGE)
    return tokens.issue_tokens(user, rotated=claims)


@blp.route("/logout", methods=["POST"])
@blp.auth_required()
@blp.arguments(LogoutSchema, location="json_or_form", required=False)
@blp.response(204)
@blp.error(503, "The blocklist is unavailable; the token was not revoked")
def logout(data: dict[str, Any]) -> None:
    """Revoke the access token used for this request and, when sent, the refresh token too."""
    try:
        tokens.revoke(get_jwt())
        if "refresh_token" in data:
            tokens.revoke_family(data["refresh_token"])
    except redis.RedisError:
        abort(503, message="Cannot revoke the token right now; try again shortly", headers=RETRY_LATER)


@blp.route("/users/me", methods=["GET"])
@blp.auth_required()
@blp.response(200, UserSchema)
def me() -> User:
    return current_user()
