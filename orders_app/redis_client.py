"""Redis clients built from the configuration: ``REDIS_URL``, failing fast."""

import redis


def connect(config, **options):
    """A redis-py client whose commands give up after ``REDIS_SOCKET_TIMEOUT`` seconds.

    ``decode_responses`` stays a per-client choice: RQ needs a client that returns bytes.
    """
    timeout = config["REDIS_SOCKET_TIMEOUT"]
    return redis.Redis.from_url(
        config["REDIS_URL"], socket_timeout=timeout, socket_connect_timeout=timeout, **options
    )
