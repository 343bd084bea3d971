"""Password hashing with argon2id; cost from ``PASSWORD_HASH_TIME_COST`` / ``_MEMORY_COST`` (KiB).

A hash takes ~100 ms of CPU. Under gevent (the web process) it runs in gevent's thread pool,
where argon2's C code releases the GIL, so the worker's other connections keep being served;
at most ``PASSWORD_HASH_CONCURRENCY`` hashes (64 MiB each) run at once per process.
"""

import sys
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar, TypeVarTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

if TYPE_CHECKING:
    from gevent.lock import BoundedSemaphore

T = TypeVar("T")
Args = TypeVarTuple("Args")


@lru_cache
def _hasher(time_cost: int, memory_cost: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)


@lru_cache
def _dummy_hash(time_cost: int, memory_cost: int) -> str:
    """Verified against when the email is unknown, so both failures take the same time."""
    return _hasher(time_cost, memory_cost).hash("not-a-real-password")


def _cost() -> tuple[int, int]:
    return current_app.config["PASSWORD_HASH_TIME_COST"], current_app.config["PASSWORD_HASH_MEMORY_COST"]


def _under_gevent() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


@lru_cache
def _hashing_slots(size: int) -> "BoundedSemaphore":
    from gevent.lock import BoundedSemaphore

    return BoundedSemaphore(size)


def _off_the_event_loop(function: Callable[[*Args], T], *args: *Args) -> T:
    """``function(*args)``, in gevent's thread pool when running under gevent."""
    if not _under_gevent():
        return function(*args)
    import gevent

    with _hashing_slots(current_app.config["PASSWORD_HASH_CONCURRENCY"]):
        return gevent.get_hub().threadpool.apply(function, args)


def hash_password(password: str) -> str:
    return _off_the_event_loop(_hasher(*_cost()).hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    cost = _cost()
    hasher = _hasher(*cost)

    def verify() -> bool:  # the dummy hash, made once per process, is argon2 work too: off the loop
        return hasher.verify(password_hash or _dummy_hash(*cost), password)

    try:
        verified = _off_the_event_loop(verify)
    except (VerificationError, InvalidHashError):
        return False
    return verified and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    return _hasher(*_cost()).check_needs_rehash(password_hash)
