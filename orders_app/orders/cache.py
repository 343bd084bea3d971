"""The order cache: Redis key ``order:{id}`` holding the order as the API returns it, for 5 minutes.

Filling after a miss uses ``SET NX`` and writing through after a commit a plain ``SET``, so a slow
reader never overwrites a newer state. Redis trouble is logged and treated as a miss: reads and
writes go on from PostgreSQL.
"""

import json
import logging

import redis

from ..extensions import cache_redis
from .schemas import OrderSchema

log = logging.getLogger(__name__)

TTL_SECONDS = 300
_schema = OrderSchema()


def key(order_id):
    return f"order:{order_id}"


def read(order_id):
    """The cached order, as the API's JSON data, or ``None`` on a miss or when Redis is unavailable."""
    try:
        cached = cache_redis.client.get(key(order_id))
    except redis.RedisError as error:
        log.warning("Order cache unavailable, reading order %s from PostgreSQL: %s", order_id, error)
        return None
    return None if cached is None else json.loads(cached)


def fill(order):
    """Cache an order read from PostgreSQL, unless a newer state is already cached."""
    _set(order, nx=True)


def store(order):
    """Write an order's committed state through to the cache."""
    _set(order, nx=False)


def _set(order, nx):
    try:
        cache_redis.client.set(key(order.id), json.dumps(_schema.dump(order)), ex=TTL_SECONDS, nx=nx)
    except redis.RedisError as error:
        log.warning("Order cache unavailable, order %s not cached: %s", order.id, error)
