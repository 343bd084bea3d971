"""flask-limiter, one limiter per app: limits read from that app's configuration, logins that give
their attempt back, and endpoints where passwords are tried failing closed while the storage is down.

Views name their limits with ``limit`` (a setting, not a limiter: the blueprints outlive any one
app); ``init_app`` builds the app's limiter and applies them. Tested in tests/test_rate_limits.py
and tests/test_library_contracts.py.
"""

import logging
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import flask_limiter
import flask_smorest
from flask import Flask, current_app, request

from ..errors import RETRY_LATER

log = logging.getLogger(__name__)

EXTENSION = "rate_limiter"
# Where a view keeps its limits, (setting, methods, key function) each, until an app applies them.
LIMITS = "rate_limits"

KeyFunc = Callable[[], str]
ViewT = TypeVar("ViewT", bound=Callable[..., Any])


def limit(
    setting: str, *, methods: list[str] | None = None, key_func: KeyFunc | None = None
) -> Callable[[ViewT], ViewT]:
    """Limit a view by the configuration's ``setting`` (``"10/minute"``), applied by each app's
    limiter; ``key_func`` counts by another key than the limiter's own."""

    def mark(view: ViewT) -> ViewT:
        setattr(view, LIMITS, [*getattr(view, LIMITS, ()), (setting, methods, key_func)])
        return view

    return mark


class Limiter(flask_limiter.Limiter):
    def __init__(self, *, fail_closed_endpoints: Collection[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_closed_endpoints = fail_closed_endpoints

    def give_back(self, key_func: KeyFunc) -> None:
        """Take back the hit this request made on its limits keyed by ``key_func`` (fixed windows,
        the only strategy allowed here, count down). Logged, not raised, if the storage fails meanwhile."""
        key = key_func()
        for current in self.current_limits:
            if key in current.request_args:
                try:
                    self.limiter.hit(current.limit, *current.request_args, cost=-1)
                except self.storage.base_exceptions as error:
                    log.warning("Could not give back a rate-limit hit (%r)", error)

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        """flask-limiter's check, failing closed where passwords are tried: while its storage is
        down (counting in memory), ``/token`` and ``/register/`` answer 503, as the in-memory
        fallback holds none of their limits. Private in flask-limiter (the one hook both its
        ``before_request`` and its decorators call), as is the flag it sets.
        """
        super()._check_request_limit(callable_name, in_middleware)
        if self._storage_dead and request.endpoint in self.fail_closed_endpoints:
            flask_smorest.abort(503, message="Rate limits unavailable; retry shortly", headers=RETRY_LATER)


def init_app(
    app: Flask, *, key_func: KeyFunc, exempt: Callable[[], bool], fail_closed_endpoints: Collection[str]
) -> None:
    """Limit ``app``: its overall limit and in-memory fallback from its configuration
    (``RATELIMIT_APPLICATION``, ``RATELIMIT_IN_MEMORY_FALLBACK``), each view's ``limit``s, none on
    requests ``exempt()`` says are free. Call once every blueprint is registered."""
    # give_back counts down, which only a fixed window (flask-limiter's default) can undo.
    if app.config.get("RATELIMIT_STRATEGY", "fixed-window") != "fixed-window":
        raise RuntimeError("RATELIMIT_STRATEGY must be fixed-window: logins give their attempt back")
    limiter = Limiter(key_func=key_func, fail_closed_endpoints=fail_closed_endpoints)
    limiter.request_filter(exempt)
    limiter.init_app(app)
    for endpoint, view in app.view_functions.items():
        limited: Callable[..., Any] = view  # one type of callable, as flask-limiter's decorator takes
        for setting, methods, limit_key in getattr(view, LIMITS, ()):
            limited = limiter.limit(app.config[setting], methods=methods, key_func=limit_key)(limited)
        app.view_functions[endpoint] = limited
    app.extensions[EXTENSION] = limiter


def give_back(key_func: KeyFunc) -> None:
    """The current app's ``Limiter.give_back``."""
    current_app.extensions[EXTENSION].give_back(key_func)
