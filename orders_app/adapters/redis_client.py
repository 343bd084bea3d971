"""redis-py clients built from the configuration (``REDIS_URL``, failing fast), one per app, and
Lua scripts run with any of them."""

import redis
from flask import current_app
from redis.commands.core import Script


def connect(config, **options):
    """A redis-py client whose commands give up after ``REDIS_SOCKET_TIMEOUT`` seconds.

    ``decode_responses`` stays a per-client choice: RQ needs a client that returns bytes.
    """
    timeout = config["REDIS_SOCKET_TIMEOUT"]
    return redis.Redis.from_url(
        config["REDIS_URL"], socket_timeout=timeout, socket_connect_timeout=timeout, **options
    )


class FlaskRedis:
    """One redis-py client per app (``connect``), reached as ``client`` within its context."""

    def __init__(self, name, **options):
        self.name = name
        self.options = options

    def init_app(self, app):
        app.extensions[self.name] = connect(app.config, **self.options)

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions[self.name]


def script(source):
    """A Lua script, called as ``script(keys=..., args=..., client=...)`` with any client (redis-py's
    ``register_script`` binds it to one, and each app has its own); loaded again after NOSCRIPT.
    Tested in tests/test_orders_cache.py and tests/test_library_contracts.py."""
    return Script(None, source)
