"""The order cache: Redis hash ``order:{id}``, for 5 minutes, with two fields: ``json``, the order
as the API returns it, and ``version``, its ``updated_at`` in microseconds since the epoch.

Writers race: a PATCH commits, and before its write-through lands the worker may commit and
write a newer state; a reader may fill the cache with a row it read before a change. So every
write goes through one Lua script that replaces the entry only with a newer version, and the
newest state stays whatever order the writes arrive in. ``updated_at`` is a usable version
because every change to an order moves it forward under the row lock (``models.Order``).

Redis trouble is logged and treated as a miss: reads and writes go on from PostgreSQL.
"""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import orjson
import redis

from ..adapters.redis_client import script
from ..extensions import cache_redis
from .schemas import OrderData

log = logging.getLogger(__name__)

TTL_SECONDS = 300
# KEYS[1] the order's key; ARGV: version, JSON, TTL. Returns 1 if written, 0 if the cache
# already holds this version or a newer one. Loaded once, called with each app's client.
STORE_IF_NEWER = script(
    b"""
local cached = tonumber(redis.call('HGET', KEYS[1], 'version'))
if cached and cached >= tonumber(ARGV[1]) then
    return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'json', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
""",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def key(order_id: uuid.UUID | str) -> str:
    return f"order:{order_id}"


def version(order: OrderData) -> int:
    """``updated_at`` in whole microseconds since the epoch (exact, unlike a float timestamp)."""
    return (datetime.fromisoformat(order["updated_at"]) - _EPOCH) // timedelta(microseconds=1)


def read(order_id: uuid.UUID) -> OrderData | None:
    """The cached order, as the API's JSON data, or ``None`` on a miss or when Redis is unavailable."""
    try:
        cached = cast(str | None, cache_redis.client.hget(key(order_id), "json"))
    except redis.RedisError as error:
        log.warning("Order cache unavailable, reading order %s from PostgreSQL: %s", order_id, error)
        return None
    return None if cached is None else cast(OrderData, orjson.loads(cached))


def store(order: OrderData) -> None:
    """Cache an order's committed state (``OrderData``), unless the cache holds this state or a newer one."""
    try:
        STORE_IF_NEWER(
            keys=[key(order["id"])],
            args=[version(order), orjson.dumps(order), TTL_SECONDS],
            client=cache_redis.client,
        )
    except redis.RedisError as error:
        log.warning("Order cache unavailable, order %s not cached: %s", order["id"], error)
