"""What the service changes in its libraries' behaviour, pinned so that an upgrade fails here, loudly."""

import pytest
from redis import Redis

from orders_app.extensions import limiter

from helpers import PASSWORD, TEST_REDIS_URL, closed_port_url, make_app

DEEPLY_NESTED_JSON = b"[" * 5000 + b"]" * 5000


# webargs: ArgumentsParser.load_json


@pytest.mark.parametrize("path", ["/orders/", "/token"])  # a JSON body, and a JSON-or-form body
def test_json_nested_too_deeply_is_a_400_in_the_error_format(client, alice, path):
    headers = {"Content-Type": "application/json", **alice["headers"]}
    response = client.post(path, data=DEEPLY_NESTED_JSON, headers=headers)
    assert response.status_code == 400
    assert response.json["code"] == 400
    assert response.json["errors"] == {"json": ["Invalid JSON body."]}


# flask-limiter: limits given as callables, and Limiter._storage_dead


def register_many(client, count, address):
    client.environ_base["REMOTE_ADDR"] = address
    return [
        client.post("/register/", json={"email": f"c{n}@example.com", "password": PASSWORD}).status_code
        for n in range(count)
    ]


def test_each_app_has_its_own_overall_limit(database):
    make_app(RATELIMIT_APPLICATION="100/minute")
    client = make_app(RATELIMIT_APPLICATION="2/minute").test_client()
    assert [client.get("/users/me").status_code for _ in range(3)] == [401, 401, 429]


def test_each_app_has_its_own_memory_fallback(database):
    unreachable = closed_port_url("redis", "/0")
    make_app(RATELIMIT_STORAGE_URI=unreachable, RATELIMIT_IN_MEMORY_FALLBACK="3/minute")
    client = make_app(
        RATELIMIT_STORAGE_URI=unreachable, RATELIMIT_IN_MEMORY_FALLBACK="1/minute"
    ).test_client()
    assert register_many(client, 2, "10.7.0.1") == [201, 429]


def test_a_new_app_forgets_that_the_last_apps_storage_was_down(database):
    make_app(RATELIMIT_STORAGE_URI=closed_port_url("redis", "/0")).test_client().get("/users/me")
    assert limiter._storage_dead is True  # flask-limiter's own flag: it counts in memory now

    client = make_app().test_client()
    assert limiter._storage_dead is False
    register_many(client, 1, "10.7.0.2")
    keys = Redis.from_url(TEST_REDIS_URL, decode_responses=True).keys("*ratelimit*")
    assert any("ip:10.7.0.2" in key for key in keys)


def test_an_app_built_without_rate_limits_stays_unlimited_when_a_later_app_has_them(database):
    unlimited = make_app(RATELIMIT_ENABLED=False).test_client()
    make_app()  # binds the shared limiter again, enabled
    assert register_many(unlimited, 6, "10.7.0.3") == [201] * 6  # the limit is 5 a minute
