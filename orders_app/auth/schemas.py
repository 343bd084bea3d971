"""Auth request and response bodies."""

from collections.abc import Mapping
from typing import Any, TypedDict

from flask_jwt_extended import decode_token, get_jwt_identity
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError
from marshmallow import ValidationError, fields, post_load, validate, validates_schema
from zxcvbn import zxcvbn

from ..schemas import Schema

PASSWORD_LENGTH = validate.Length(min=8, max=128)
# zxcvbn's 0-4 estimate: 3 is "safely unguessable" (about 10^8 guesses and more).
MIN_PASSWORD_SCORE = 3
# zxcvbn's time grows fast with the length (over 100 ms at its maximum, 72): a password is judged
# on its first 40 characters, room enough for a strong one.
PASSWORD_CHARACTERS_JUDGED = 40


def guessable_password_problem(password: str, email: str | None) -> str | None:
    """Why ``password`` is too easy to guess (common, a word, a pattern, the email), or None."""
    estimate = zxcvbn(password[:PASSWORD_CHARACTERS_JUDGED], user_inputs=[email] if email else [])
    if estimate["score"] >= MIN_PASSWORD_SCORE:
        return None
    feedback = estimate["feedback"]
    reasons = [feedback["warning"], *feedback["suggestions"]]
    return " ".join(["Too easy to guess.", *filter(None, reasons)])


def normalise_username(username: str) -> str:
    """The account a login names: its email, trimmed and lower-case (as registration stores it)."""
    return username.strip().lower()


class LowerCaseEmail(fields.Email):
    """An email address, validated, compared and stored lower-case."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(max=254), **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        return super()._deserialize(value, attr, data, **kwargs).lower()


class RegisterSchema(Schema):
    email = LowerCaseEmail(required=True)
    password = fields.String(
        required=True,
        load_only=True,
        validate=PASSWORD_LENGTH,
        metadata={"description": "8 to 128 characters, not easy to guess (zxcvbn score 3 or more)"},
    )

    @validates_schema(skip_on_field_errors=True)
    def refuse_guessable_passwords(self, data: dict[str, Any], **_kwargs: Any) -> None:
        problem = guessable_password_problem(data["password"], data["email"])
        if problem:
            raise ValidationError(problem, field_name="password")


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class TokenRequestSchema(Schema):
    """OAuth2 password grant (RFC 6749 4.3.2); client fields are accepted and ignored."""

    grant_type = fields.String(validate=validate.OneOf(["password"]))
    username = fields.String(required=True, metadata={"description": "The account's email"})
    password = fields.String(required=True, validate=validate.Length(max=128))
    scope = fields.String()
    client_id = fields.String()
    client_secret = fields.String()

    @post_load
    def normalise(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        data["username"] = normalise_username(data["username"])
        return data


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds"})
    refresh_token = fields.String(required=True, metadata={"description": "Works once: use the new one"})


class TokenData(TypedDict):
    """The token response as ``tokens.issue_tokens`` makes it: ``TokenSchema``'s fields."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class RefreshToken(fields.String):
    """A refresh token this service issued to the caller, read as its claims (expired ones too)."""

    # A string on the wire, read into the token's claims: not the ``str`` of ``fields.String``.
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> dict[str, Any]:
        token = super()._deserialize(value, attr, data, **kwargs)
        try:
            claims = decode_token(token, allow_expired=True)
        except (JWTExtendedException, PyJWTError):
            claims = {}
        if claims.get("type") != "refresh" or claims.get("sub") != get_jwt_identity():
            raise ValidationError("Not a refresh token of this user.")
        return claims


class LogoutSchema(Schema):
    refresh_token = RefreshToken(
        metadata={"description": "The session's refresh token, to revoke it (and its rotations) too"}
    )
