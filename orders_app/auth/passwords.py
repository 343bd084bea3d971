"""Password hashing with argon2id; cost from ``PASSWORD_HASH_TIME_COST`` / ``_MEMORY_COST`` (KiB)."""

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app


@lru_cache
def _hasher(time_cost, memory_cost):
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)


@lru_cache
def _dummy_hash(time_cost, memory_cost):
    """Verified against when the email is unknown, so both failures take the same time."""
    return _hasher(time_cost, memory_cost).hash("not-a-real-password")


def _cost():
    return current_app.config["PASSWORD_HASH_TIME_COST"], current_app.config["PASSWORD_HASH_MEMORY_COST"]


def hash_password(password: str) -> str:
    return _hasher(*_cost()).hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        verified = _hasher(*_cost()).verify(password_hash or _dummy_hash(*_cost()), password)
    except (VerificationError, InvalidHashError):
        return False
    return verified and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    return _hasher(*_cost()).check_needs_rehash(password_hash)
