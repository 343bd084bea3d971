"""The API, orders: GET /orders/{id}/ through the Redis cache, ETags, ownership, Redis down."""

import json
import uuid

import pytest
from redis import Redis

from support.client import place_order
from support.network import closed_port_url
from support.settings import TEST_REDIS_URL, make_app


@pytest.fixture
def redis_client():
    return Redis.from_url(TEST_REDIS_URL, decode_responses=True)


def test_first_read_misses_then_hits(client, alice):
    order = place_order(client, alice["headers"])
    first = client.get(f"/orders/{order['id']}/", headers=alice["headers"])
    second = client.get(f"/orders/{order['id']}/", headers=alice["headers"])
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.json == second.json == order


def test_the_cache_key_holds_the_order_for_five_minutes(client, alice, redis_client):
    order = place_order(client, alice["headers"])
    client.get(f"/orders/{order['id']}/", headers=alice["headers"])
    assert json.loads(redis_client.hget(f"order:{order['id']}", "json")) == order
    assert 295 <= redis_client.ttl(f"order:{order['id']}") <= 300


def test_a_hit_is_served_from_redis_not_postgresql(client, alice, redis_client):
    order = place_order(client, alice["headers"])
    client.get(f"/orders/{order['id']}/", headers=alice["headers"])
    planted = {**order, "status": "SHIPPED"}  # only the cache says so
    redis_client.hset(f"order:{order['id']}", "json", json.dumps(planted))
    response = client.get(f"/orders/{order['id']}/", headers=alice["headers"])
    assert response.headers["X-Cache"] == "HIT"
    assert response.json["status"] == "SHIPPED"


def test_etag_is_the_same_on_miss_and_hit_and_gives_304(client, alice):
    order = place_order(client, alice["headers"])
    url = f"/orders/{order['id']}/"
    miss = client.get(url, headers=alice["headers"])
    hit = client.get(url, headers=alice["headers"])
    assert miss.headers["ETag"] == hit.headers["ETag"]
    not_modified = client.get(url, headers={**alice["headers"], "If-None-Match": hit.headers["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    stale = client.get(url, headers={**alice["headers"], "If-None-Match": '"something-else"'})
    assert stale.status_code == 200


def test_no_stale_read_after_a_status_change(client, alice):
    order = place_order(client, alice["headers"])
    url = f"/orders/{order['id']}/"
    etag_before = client.get(url, headers=alice["headers"]).headers["ETag"]  # cached as PENDING
    client.patch(url, json={"status": "PAID"}, headers=alice["headers"])
    response = client.get(url, headers={**alice["headers"], "If-None-Match": etag_before})
    assert response.status_code == 200
    assert response.headers["X-Cache"] == "HIT"
    assert response.json["status"] == "PAID"


@pytest.mark.parametrize("cached_first", [False, True])
def test_another_users_order_is_404_even_from_the_cache(client, alice, bob, cached_first):
    order = place_order(client, alice["headers"])
    if cached_first:
        assert client.get(f"/orders/{order['id']}/", headers=alice["headers"]).status_code == 200
    response = client.get(f"/orders/{order['id']}/", headers=bob["headers"])
    assert response.status_code == 404
    assert response.json["message"] == "Order not found"


@pytest.mark.parametrize("cached_first", [False, True])
def test_admins_read_every_order(client, alice, admin, cached_first):
    order = place_order(client, alice["headers"])
    if cached_first:
        client.get(f"/orders/{order['id']}/", headers=alice["headers"])
    response = client.get(f"/orders/{order['id']}/", headers=admin["headers"])
    assert response.status_code == 200
    assert response.json == order


@pytest.mark.parametrize("order_id", ["not-a-uuid", "123", str(uuid.uuid4()), "5b0c%00"])
def test_unknown_or_malformed_ids_are_404(client, alice, order_id):
    response = client.get(f"/orders/{order_id}/", headers=alice["headers"])
    assert response.status_code == 404
    assert response.json["code"] == 404


def test_reading_needs_a_token(client, alice):
    order = place_order(client, alice["headers"])
    assert client.get(f"/orders/{order['id']}/").status_code == 401


# --- Redis down: PostgreSQL serves, nothing is a 500 ----------------------------------------


@pytest.fixture
def client_without_redis(database):
    return make_app(REDIS_URL=closed_port_url("redis", "/0")).test_client()


def test_orders_work_from_postgresql_while_redis_is_down(client_without_redis, alice, caplog):
    order = place_order(client_without_redis, alice["headers"])
    url = f"/orders/{order['id']}/"
    read = client_without_redis.get(url, headers=alice["headers"])
    assert read.status_code == 200
    assert read.headers["X-Cache"] == "MISS"
    assert read.json == order
    changed = client_without_redis.patch(url, json={"status": "PAID"}, headers=alice["headers"])
    assert changed.status_code == 200
    assert client_without_redis.get(url, headers=alice["headers"]).json["status"] == "PAID"
    listed = client_without_redis.get(f"/orders/user/{alice['user']['id']}/", headers=alice["headers"])
    assert listed.status_code == 200 and len(listed.json) == 1
    assert "Order cache unavailable" in caplog.text
