"""redis-py clients built from the configuration (``REDIS_URL``, failing fast), one per app, and
Lua scripts run with any of them."""

from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask, current_app
from redis.commands.core import Script


def connect(config: Mapping[str, Any], **options: Any) -> redis.Redis:
    """A redis-py client whose commands give up after ``REDIS_SOCKET_TIMEOUT`` seconds.

    ``decode_responses`` stays a per-client choice: RQ needs a client that returns bytes.
    """
    timeout = config["REDIS_SOCKET_TIMEOUT"]
    return redis.Redis.from_url(
        config["REDIS_URL"], socket_timeout=timeout, socket_connect_timeout=timeout, **options
    )


class FlaskRedis:
    """One redis-py client per app (``connect``), reached as ``client`` within its context."""

    def __init__(self, name: str, **options: Any) -> None:
        self.name = name
        self.options = options

    def init_app(self, app: Flask) -> None:
        app.extensions[self.name] = connect(app.config, **self.options)

    @property
    def client(self) -> redis.Redis:
        client: redis.Redis = current_app.extensions[self.name]
        return client


def script(source: str | bytes) -> Script:
    """A Lua script, called as ``script(keys=..., args=..., client=...)`` with any client (redis-py's
    ``register_script`` binds it to one, and each app has its own); loaded again after NOSCRIPT.
    Tested in tests/test_orders_cache.py and tests/test_library_contracts.py."""
    return Script(None, source)  # type: ignore[arg-type]  # bound to no client: each call names one
